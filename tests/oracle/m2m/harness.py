"""Running one many-to-many scenario on Django and on SQLAlchemy, logging ``m2m_changed``.

A scenario is a list of steps; each step is one operation written twice, once per ORM, over a
"world" of objects with the same primary keys on both sides (authors ``a1``-``a3``, books ``b1``
and ``b2``, topics ``t1``-``t3``, article ``art1``, persons ``p1``-``p3``, members ``m1``/``m2``
and group ``g1``). Links listed in ``setup`` exist before the receivers connect.

Each side logs every ``m2m_changed`` as an :data:`Entry`. Django sends each call's pair around
its own SQL; tidings sends every ``pre_*`` of a flush before the rows are written and every
``post_*`` after. One step is one flush, so :func:`by_phase` orders each step's entries the
same way on both sides (stable: pre entries, then post entries) before they are compared.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.pool import StaticPool

from tests.oracle.m2m import twins

#: (action, sender table, instance class, instance pk, reverse, model name, pk_set, using)
Entry = tuple[str, str, str, Any, bool, str, Any, str]
Step = Callable[[SimpleNamespace], Any]

FLAVORS = ("sqlite", "sqlite-async", "postgres", "postgres-async")

_WORLD = {
    "Author": ("a1", "a2", "a3"),
    "Book": ("b1", "b2"),
    "Topic": ("t1", "t2", "t3"),
    "Article": ("art1",),
    "Person": ("p1", "p2", "p3"),
    "Member": ("m1", "m2"),
    "Group": ("g1",),
}
_COLLECTIONS = {
    "Author": ("books",),
    "Book": ("authors",),
    "Topic": ("articles",),
    "Article": ("topics",),
    "Person": ("following", "followers"),
    "Member": ("groups",),
    "Group": ("members",),
}


@dataclass
class Scenario:
    """Steps written for both ORMs, each run (and, on SQLAlchemy, flushed) in turn."""

    name: str
    django: list[Step]
    sqla: list[Step]
    #: ``(owner, relationship, targets)`` linked before the receivers connect.
    setup: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)


def _table_name(sender: Any) -> str:
    meta = getattr(sender, "_meta", None)
    if meta is not None:
        return str(meta.db_table)
    table = getattr(sender, "__table__", sender)
    return str(table.name)


class Recorder:
    """Connects to one ``m2m_changed`` signal and logs each send, one list per step."""

    def __init__(self, signal: Any) -> None:
        self.signal = signal
        self.steps: list[list[Entry]] = []
        self.raw: list[dict[str, Any]] = []
        signal.connect(self.receive, weak=False)

    def receive(self, sender: Any, **kwargs: Any) -> None:
        """Log one send into the current step."""
        pk_set = kwargs["pk_set"]
        instance = kwargs["instance"]
        entry: Entry = (
            kwargs["action"],
            _table_name(sender),
            type(instance).__name__,
            instance.id,
            kwargs["reverse"],
            kwargs["model"].__name__,
            None if pk_set is None else sorted(pk_set),
            kwargs["using"],
        )
        self.steps[-1].append(entry)
        self.raw.append({"sender": sender, **kwargs})

    def next_step(self) -> None:
        """Start logging a new step."""
        self.steps.append([])

    def close(self) -> None:
        """Disconnect."""
        self.signal.disconnect(self.receive)


def by_phase(steps: list[list[Entry]]) -> list[list[Entry]]:
    """Order each step's entries pre-first, keeping the order inside each phase."""
    return [sorted(step, key=lambda entry: entry[0].startswith("post_")) for step in steps]


# -- Django ------------------------------------------------------------------------------------


def _django_models() -> list[Any]:
    from django.apps import apps as django_apps

    return list(django_apps.get_app_config("m2m").get_models())


def reset_django() -> None:
    """Configure Django once and create (or empty) the tables of the m2m twin app."""
    from tests.oracle import setup_django

    setup_django()
    from django.db import connection

    existing = set(connection.introspection.table_names())
    models = _django_models()
    with connection.schema_editor() as editor:
        for model in models:
            if model._meta.db_table not in existing:
                editor.create_model(model)
    with connection.cursor() as cursor:
        for model in models:
            for through in [f.remote_field.through for f in model._meta.local_many_to_many]:
                if through._meta.auto_created:
                    cursor.execute(f'DELETE FROM "{through._meta.db_table}"')
        for model in reversed(models):
            cursor.execute(f'DELETE FROM "{model._meta.db_table}"')


def django_world() -> SimpleNamespace:
    """Empty the Django tables and create the scenario objects there."""
    reset_django()
    from tests.oracle.m2m import models

    world = SimpleNamespace(models=models)
    for model_name, names in _WORLD.items():
        model = getattr(models, model_name)
        for pk, name in enumerate(names, start=1):
            setattr(world, name, model.objects.create(id=pk))
    return world


def run_django(scenario: Scenario) -> list[list[Entry]]:
    """Run ``scenario`` on Django's ORM and return its log, one list per step."""
    world = django_world()
    from django.db.models.signals import m2m_changed

    for owner, relation, targets in scenario.setup:
        getattr(getattr(world, owner), relation).add(*(getattr(world, t) for t in targets))
    recorder = Recorder(m2m_changed)
    try:
        for step in scenario.django:
            recorder.next_step()
            step(world)
    finally:
        recorder.close()
    return recorder.steps


# -- SQLAlchemy --------------------------------------------------------------------------------


def _foreign_keys_on(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


class SqlaWorld(SimpleNamespace):
    """The SQLAlchemy objects of a scenario, plus the session's awaitable helpers."""

    session: Session | AsyncSession

    def delete(self, obj: Any) -> Any:
        """Mark ``obj`` deleted (a coroutine under AsyncSession)."""
        return self.session.delete(obj)


def build_world(models: SimpleNamespace, session: Session | AsyncSession) -> SqlaWorld:
    """Create the scenario objects with their collections loaded (empty), added to session.

    Models missing from ``models`` (a twin set covering fewer relationships) are skipped.
    """
    world = SqlaWorld(models=models, session=session)
    for model_name, names in _WORLD.items():
        model = getattr(models, model_name, None)
        if model is None:
            continue
        for pk, name in enumerate(names, start=1):
            obj = model(id=pk)
            # Mark each collection of the new object as loaded and empty, so that no step
            # lazy-loads (which AsyncSession forbids outside await) or autoflushes.
            for key in _COLLECTIONS[model_name]:
                empty: set[Any] | list[Any] = set() if model_name in ("Article", "Topic") else []
                set_committed_value(obj, key, empty)
            setattr(world, name, obj)
            session.add(obj)
    return world


def link(world: SimpleNamespace, owner: str, relation: str, targets: tuple[str, ...]) -> None:
    """Add ``targets`` to the collection ``relation`` of ``owner`` (a list or a set)."""
    collection = getattr(getattr(world, owner), relation)
    for target in targets:
        if isinstance(collection, set):
            collection.add(getattr(world, target))
        else:
            collection.append(getattr(world, target))


async def _maybe_await(value: Any) -> None:
    if inspect.isawaitable(value):
        await value


def sqla_engine_url(flavor: str, postgres_url: str | None) -> str:
    """The SQLAlchemy URL of ``flavor`` (``postgres_url`` is the test database's)."""
    if flavor == "sqlite":
        return "sqlite://"
    if flavor == "sqlite-async":
        return "sqlite+aiosqlite://"
    assert postgres_url is not None
    driver = "asyncpg" if flavor.endswith("-async") else "psycopg"
    return postgres_url.replace("postgresql:", f"postgresql+{driver}:", 1)


def run_sqla(scenario: Scenario, models: SimpleNamespace, url: str) -> list[list[Entry]]:
    """Run ``scenario`` on fresh tables at ``url`` and return its log, one list per step."""
    from tidings.models import m2m_changed

    recorder = Recorder(m2m_changed)
    try:
        if "+aiosqlite" in url or "+asyncpg" in url:
            asyncio.run(_run_async(scenario, models, url, recorder))
        else:
            _run_sync(scenario, models, url, recorder)
    finally:
        recorder.close()
    return recorder.steps


def _empty_tables(connection: Connection, models: SimpleNamespace) -> None:
    # Emptying is much cheaper than dropping and creating again on PostgreSQL.
    metadata = models.Base.metadata
    metadata.create_all(connection)
    for table in reversed(metadata.sorted_tables):
        connection.execute(table.delete())


def _run_sync(scenario: Scenario, models: SimpleNamespace, url: str, recorder: Recorder) -> None:
    engine = create_engine(url, poolclass=StaticPool) if url == "sqlite://" else create_engine(url)
    if url == "sqlite://":
        _foreign_keys_on(engine)
    try:
        with engine.begin() as connection:
            _empty_tables(connection, models)
        with Session(engine) as session:
            world = build_world(models, session)
            for owner, relation, targets in scenario.setup:
                link(world, owner, relation, targets)
            with _muted(recorder):
                session.flush()
            for step in scenario.sqla:
                recorder.next_step()
                step(world)
                session.flush()
            session.rollback()
    finally:
        engine.dispose()


async def _run_async(
    scenario: Scenario, models: SimpleNamespace, url: str, recorder: Recorder
) -> None:
    sqlite = url.startswith("sqlite")
    engine = create_async_engine(url, poolclass=StaticPool) if sqlite else create_async_engine(url)
    if sqlite:
        _foreign_keys_on(engine.sync_engine)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_empty_tables, models)
        async with AsyncSession(engine, expire_on_commit=False) as session:
            world = build_world(models, session)
            for owner, relation, targets in scenario.setup:
                link(world, owner, relation, targets)
            with _muted(recorder):
                await session.flush()
            for step in scenario.sqla:
                recorder.next_step()
                await _maybe_await(step(world))
                await session.flush()
            await session.rollback()
    finally:
        await engine.dispose()


class _muted:
    """Drop what the recorder logs inside the block (the setup flush)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def __enter__(self) -> None:
        self.recorder.next_step()

    def __exit__(self, *exc: object) -> None:
        self.recorder.steps.pop()


def fresh_models() -> SimpleNamespace:
    """Build the twins under a new base and instrument it."""
    from tidings.sqlalchemy import instrument

    base = twins.declarative_base()
    instrument(base)
    return twins.build(base)
