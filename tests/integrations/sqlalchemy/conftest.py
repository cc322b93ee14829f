"""Harness of the SQLAlchemy integration tests: Django as oracle, SQLAlchemy in five flavors.

A differential test runs one scenario twice: with Django's ORM on the twin models of
``tests.oracle.lifecycle`` (SQLite in memory), and with the SQLAlchemy twins of ``twins.py``
(or ``sqlmodel_twins.py``) in the flavor the test is parametrized with. Both sides log
``(signal, sender name, instance id, Django's keyword arguments)`` and the logs must be equal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

import tidings.models as tm
from tests.conftest import fresh_postgres_database
from tests.integrations.sqlalchemy import twins
from tests.integrations.sqlalchemy.programs import FLAVORS as PROGRAM_FLAVORS
from tests.integrations.sqlalchemy.programs import Flavor, Mail, Row, Via, receivers
from tidings.apps import apps
from tidings.sqlalchemy import asave, instrument, save

#: The keyword arguments Django sends, per signal: only these are compared.
DJANGO_KEYS = {
    "pre_init": ("args", "kwargs"),
    "post_init": (),
    "pre_save": ("raw", "using", "update_fields"),
    "post_save": ("created", "raw", "using", "update_fields"),
    "pre_delete": ("using", "origin"),
    "post_delete": ("using", "origin"),
}
SAVE_DELETE = ("pre_save", "post_save", "pre_delete", "post_delete")
FLAVORS = ["sqlite", "sqlite-async", "postgres", "postgres-async", "sqlmodel"]

Entry = tuple[str, str, Any, dict[str, Any]]


def ident(obj: Any) -> Any:
    """The id of a model instance on either side, or a description of a non-model value."""
    if (hasattr(obj, "_meta") and hasattr(obj, "pk")) or hasattr(obj, "_sa_instance_state"):
        return (type(obj).__name__, obj.id) if hasattr(obj, "id") else type(obj).__name__
    return type(obj).__name__


def _plain(value: Any) -> Any:
    if isinstance(value, (frozenset, set)):
        return sorted(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return tuple(_plain(item) for item in value)
    if hasattr(value, "_meta") or hasattr(value, "_sa_instance_state"):
        return ident(value)
    return value


class Recorder:
    """Logs every send of the given signals, normalized for comparison."""

    def __init__(self, signals: dict[str, Any], names: tuple[str, ...]) -> None:
        self.log: list[Entry] = []
        self.extra: list[dict[str, Any]] = []
        self._connected: list[tuple[Any, Callable[..., Any]]] = []
        for name in names:
            signal = signals[name]

            def receiver(sender: Any, _name: str = name, **kwargs: Any) -> None:
                instance = kwargs.get("instance")
                pk = getattr(instance, "id", None) if instance is not None else None
                compared = {key: _plain(kwargs[key]) for key in DJANGO_KEYS[_name]}
                if "origin" in compared:
                    compared["origin"] = _origin(kwargs["origin"])
                self.log.append((_name, sender.__name__, pk, compared))
                self.extra.append(kwargs)

            signal.connect(receiver, weak=False)
            self._connected.append((signal, receiver))

    def close(self) -> None:
        """Disconnect every receiver."""
        for signal, receiver in self._connected:
            signal.disconnect(receiver)


def _origin(origin: Any) -> Any:
    name = type(origin).__name__
    if name in ("QuerySet", "Delete"):
        return "bulk"
    return (name, origin.id) if hasattr(origin, "id") else name


# -- Django ------------------------------------------------------------------------------------


class DjangoSide:
    """The Django twin models and a recorder for Django's own signals."""

    def __init__(self) -> None:
        from django.db.models import signals

        from tests.oracle.lifecycle import models

        self.models = models
        self.signals = {name: getattr(signals, name) for name in DJANGO_KEYS}

    def run(self, scenario: Callable[[Any], object], names: tuple[str, ...]) -> list[Entry]:
        """Run ``scenario(models)`` recording ``names``; return the log."""
        recorder = Recorder(self.signals, names)
        try:
            scenario(self.models)
        finally:
            recorder.close()
        return recorder.log


def _reset_django() -> None:
    from django.apps import apps as django_apps
    from django.db import connection

    models = [m for m in django_apps.get_app_config("lifecycle").get_models() if not m._meta.proxy]
    existing = set(connection.introspection.table_names())
    with connection.schema_editor() as editor:
        for model in models:
            if model._meta.db_table not in existing:
                editor.create_model(model)
    with connection.cursor() as cursor:
        for model in reversed(models):
            cursor.execute(f'DELETE FROM "{model._meta.db_table}"')
        cursor.execute("DELETE FROM sqlite_sequence")


@pytest.fixture
def django_side() -> DjangoSide:
    """Django, configured once, with the lifecycle tables emptied and pk sequences reset."""
    from tests.oracle import setup_django

    setup_django()
    _reset_django()
    return DjangoSide()


# -- SQLAlchemy --------------------------------------------------------------------------------


class Db:
    """One session of one flavor, with awaitable operations for sync and async alike."""

    def __init__(self, session: Session | AsyncSession, models: SimpleNamespace) -> None:
        self.session = session
        self.models = models
        self.is_async = isinstance(session, AsyncSession)
        self.sync: Session = session.sync_session if isinstance(session, AsyncSession) else session

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.session, name)(*args, **kwargs)
        if self.is_async and isinstance(result, Awaitable):
            return await result
        return result

    def add(self, *objs: Any) -> None:
        """Add objects to the session."""
        self.session.add_all(objs)

    async def flush(self) -> None:
        """Flush the session."""
        await self._call("flush")

    async def commit(self) -> None:
        """Commit the session."""
        await self._call("commit")

    async def rollback(self) -> None:
        """Roll the session back."""
        await self._call("rollback")

    async def get(self, cls: type, pk: Any) -> Any:
        """Return the instance with ``pk``."""
        return await self._call("get", cls, pk)

    async def refresh(self, obj: Any) -> None:
        """Reload ``obj``'s attributes from its row."""
        await self._call("refresh", obj)

    async def delete(self, obj: Any) -> None:
        """Mark ``obj`` deleted."""
        await self._call("delete", obj)

    async def merge(self, obj: Any) -> Any:
        """Merge ``obj`` into the session."""
        return await self._call("merge", obj)

    async def execute(self, statement: Any, *args: Any) -> Any:
        """Execute a statement."""
        return await self._call("execute", statement, *args)

    async def scalars(self, statement: Any) -> list[Any]:
        """Execute a select and return its scalars as a list."""
        return list((await self._call("scalars", statement)).all())

    async def save(self, obj: Any, **kwargs: Any) -> None:
        """Save ``obj`` explicitly (tidings.sqlalchemy.save / asave)."""
        if isinstance(self.session, AsyncSession):
            await asave(self.session, obj, **kwargs)
        else:
            save(self.session, obj, **kwargs)

    def forget(self) -> None:
        """Expunge every instance, so that the next ``get`` loads a new one from the rows."""
        self.session.expunge_all()


def _foreign_keys_on(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


class SqlaSide:
    """The SQLAlchemy twins in one flavor; :meth:`run` runs a scenario in fresh tables."""

    def __init__(self, flavor: str, request: pytest.FixtureRequest) -> None:
        self.flavor = flavor
        self.url: str | None = None
        if flavor.startswith("postgres"):
            self.url = request.getfixturevalue("shared_postgres_url")
        if flavor == "sqlmodel":
            from tests.integrations.sqlalchemy.sqlmodel_twins import MODELS

            self.models = MODELS
        else:
            base = twins.declarative_base()
            instrument(base)
            self.models = twins.build(base)
        self.signals = {name: getattr(tm, name) for name in DJANGO_KEYS}

    @property
    def metadata(self) -> Any:
        return self.models.Base.metadata

    def run(
        self,
        scenario: Callable[[Db], Awaitable[object]],
        names: tuple[str, ...] = SAVE_DELETE,
        *,
        recorder: Recorder | None = None,
    ) -> list[Entry]:
        """Run ``scenario(db)`` in a fresh database, recording ``names``; return the log."""
        recorder = recorder or Recorder(self.signals, names)
        try:
            asyncio.run(self._run(scenario, recorder))
        finally:
            recorder.close()
        return recorder.log

    async def _run(self, scenario: Callable[[Db], Awaitable[object]], recorder: Recorder) -> None:
        if self.flavor.endswith("-async"):
            await self._run_async(scenario)
        else:
            self._run_sync_setup()
            try:
                session = self._session_class()(self.engine)
                try:
                    await scenario(Db(session, self.models))
                finally:
                    session.close()
            finally:
                self.metadata.drop_all(self.engine)
                self.engine.dispose()

    def _session_class(self) -> type[Session]:
        if self.flavor == "sqlmodel":
            from sqlmodel import Session as SQLModelSession

            return SQLModelSession
        return Session

    def _run_sync_setup(self) -> None:
        if self.url is not None:
            self.engine = create_engine(self.url.replace("postgresql:", "postgresql+psycopg:"))
        else:
            self.engine = create_engine("sqlite://", poolclass=StaticPool)
            _foreign_keys_on(self.engine)
        self.metadata.create_all(self.engine)

    async def _run_async(self, scenario: Callable[[Db], Awaitable[object]]) -> None:
        if self.url is not None:
            engine = create_async_engine(self.url.replace("postgresql:", "postgresql+asyncpg:"))
        else:
            engine = create_async_engine("sqlite+aiosqlite://", poolclass=StaticPool)
            _foreign_keys_on(engine.sync_engine)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(self.metadata.create_all)
            async with AsyncSession(engine) as session:
                await scenario(Db(session, self.models))
            async with engine.begin() as connection:
                await connection.run_sync(self.metadata.drop_all)
        finally:
            await engine.dispose()


@pytest.fixture(scope="session")
def shared_postgres_url() -> Iterator[str]:
    """One new PostgreSQL database for all the tests here (each run drops its tables).

    Creating a database per test, as the ``postgres_url`` fixture does, would cost most of the
    time of these tests; the skip-or-fail rule is the same.
    """
    with fresh_postgres_database("tidings_sa") as url:
        yield url


@pytest.fixture(autouse=True)
def _isolated_apps() -> Iterator[None]:
    """Every test registers its models in a fresh, empty app registry."""
    with apps.isolated():
        yield


@pytest.fixture(params=FLAVORS)
def sqla(request: pytest.FixtureRequest) -> SqlaSide:
    """The SQLAlchemy side in each flavor: sync/async on SQLite/PostgreSQL, and SQLModel."""
    return SqlaSide(request.param, request)


@pytest.fixture(params=[f for f in FLAVORS if f != "sqlmodel"])
def sqla_declarative(request: pytest.FixtureRequest) -> SqlaSide:
    """The SQLAlchemy side with the declarative twins only (models SQLModel lacks)."""
    return SqlaSide(request.param, request)


@pytest.fixture
def sqlite() -> SqlaSide:
    """The sync SQLite flavor alone, for SQLAlchemy-only behaviour."""

    class _Request:
        def getfixturevalue(self, name: str) -> Any:  # pragma: no cover - never asked
            raise AssertionError(name)

    return SqlaSide("sqlite", _Request())  # type: ignore[arg-type]


# -- on-commit programs (programs.py) ----------------------------------------------------------


@pytest.fixture(params=PROGRAM_FLAVORS)
def flavor(request: pytest.FixtureRequest) -> Flavor:
    """Sync and async Sessions on SQLite and PostgreSQL, for on-commit programs."""
    url = request.getfixturevalue("shared_postgres_url") if "postgres" in request.param else None
    return Flavor(request.param, url)


@pytest.fixture(params=[name for name in PROGRAM_FLAVORS if name.endswith("-async")])
def async_flavor(request: pytest.FixtureRequest) -> Flavor:
    """AsyncSession on SQLite and PostgreSQL, for on-commit programs."""
    url = request.getfixturevalue("shared_postgres_url") if "postgres" in request.param else None
    return Flavor(request.param, url)


@pytest.fixture
def sqlite_engine() -> Iterator[Engine]:
    """A sync SQLite engine with the tables of programs.py (Row, Mail)."""
    engine = create_engine("sqlite://", poolclass=StaticPool)
    Row.metadata.create_all(engine)
    Mail.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["function", "signal"])
def route(request: pytest.FixtureRequest) -> Iterator[Via]:
    """How a test defers its work (``programs.register``): ``on_commit()``, or a receiver
    connected with ``delivery="on_commit"`` (connected for the test)."""
    with receivers():
        yield request.param
