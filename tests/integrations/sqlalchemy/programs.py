"""Transaction programs: one scenario run on SQLAlchemy (four flavors), on Django, and on a model.

A program is a :class:`Block` (the outermost transaction) of steps: ``Send(label)`` registers
work that logs ``label`` after the commit, ``Flush()`` writes a row, and an inner ``Block`` is a
savepoint. A ``Send`` goes ``via`` one of four routes: ``"function"`` calls ``on_commit()``,
``"signal"`` sends a plain signal whose receiver is connected with ``delivery="on_commit"``,
``"async"`` the same with an async receiver (AsyncSession only), and ``"model"`` saves a row
whose ``post_save`` receiver is (the model signal of the flush; the receiver reads the label
back from the committed, expired instance). Django runs the same routes with
``transaction.on_commit``: called directly, from a ``Signal`` receiver (for both signal routes)
and from a ``post_save`` receiver. Each block ends in one of three ways: ``"commit"``
(released / committed), ``"rollback"`` (rolled back explicitly) or ``"raise"`` (an exception
leaves its ``with`` block).
:func:`expected` is the model of the rules: the labels of the blocks that survive, in order,
when the outermost block commits, and nothing otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Integer, String, create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import StaticPool

from tidings import Signal
from tidings.apps import apps
from tidings.models import post_save
from tidings.sqlalchemy import instrument, on_commit

Outcome = Literal["commit", "rollback", "raise"]
Via = Literal["function", "signal", "async", "model"]
FLAVORS = ["sqlite", "sqlite-async", "postgres", "postgres-async"]
VIAS: tuple[Via, ...] = ("function", "signal", "model")  # every Session
ASYNC_VIAS: tuple[Via, ...] = (*VIAS, "async")  # an AsyncSession


@dataclass(frozen=True)
class Send:
    """Register work that logs ``label`` after the commit, by way of ``via``."""

    label: str
    via: Via = "function"


@dataclass(frozen=True)
class Flush:
    """Add a row and flush it."""


@dataclass(frozen=True)
class Block:
    """A transaction (the outermost block) or a savepoint (any inner block)."""

    steps: tuple[Send | Flush | Block, ...] = ()
    outcome: Outcome = "commit"


Step = Send | Flush | Block


def three_deep(vias: tuple[Via, ...] = ("function",)) -> list[Block]:
    """Savepoints three deep, every combination of release and rollback (and the root's).

    The sends take their route from ``vias`` in turn.
    """
    outcomes: tuple[Outcome, ...] = ("commit", "rollback")
    programs = []
    for root, first, second, third in itertools.product(outcomes, repeat=4):
        route = itertools.cycle(vias)

        def send(label: str) -> Send:
            return Send(label, next(route))  # noqa: B023 - called at once, in this iteration

        r1, a1, b1, c, b2, a2, r2 = (send(n) for n in ("r1", "a1", "b1", "c", "b2", "a2", "r2"))
        inner = Block((c, Flush()), third)
        middle = Block((b1, inner, b2), second)
        outer = Block((a1, Flush(), middle, a2), first)
        programs.append(Block((r1, outer, r2), root))
    return programs


def scenarios(via: Via = "function") -> dict[str, Block]:
    """Commit, rollback, exceptions and sibling savepoints, each send going ``via``."""
    a, b, c = Send("a", via), Send("b", via), Send("c", via)
    return {
        "commit": Block((a, Flush(), b)),
        "rollback": Block((a, Flush()), "rollback"),
        "exception in begin()": Block((Flush(), a), "raise"),
        "savepoint raises": Block((a, Block((b, Flush()), "raise"), c)),
        "sibling savepoints": Block((Block((a,), "rollback"), Block((b,)), Block((c,), "raise"))),
    }


def expected(program: Block) -> list[str]:
    """The labels logged after the program ran: Django's ``on_commit`` rules."""
    return _surviving(program) if program.outcome == "commit" else []


def _surviving(block: Block) -> list[str]:
    labels: list[str] = []
    for step in block.steps:
        if isinstance(step, Send):
            labels.append(step.label)
        elif isinstance(step, Block) and step.outcome == "commit":
            labels.extend(_surviving(step))
    return labels


class Boom(Exception):
    """Raised to leave a block with an exception."""


class Base(DeclarativeBase):
    """The base of :class:`Row` (not instrumented: these tests need no model signals)."""


class Row(Base):
    """A row written by ``Flush()``."""

    __tablename__ = "oncommit_row"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(50), default="")


class _MailBase(DeclarativeBase):
    """The base of :class:`Mail`, instrumented by :func:`receivers`."""

    __app_label__ = "oncommit"


class Mail(_MailBase):
    """A row whose ``post_save`` receiver is connected with ``delivery="on_commit"``."""

    __tablename__ = "oncommit_mail"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(50))


#: Where the post_save receiver of each Mail logs (see :func:`new_mail`).
_mail_logs: weakref.WeakKeyDictionary[Mail, list[str]] = weakref.WeakKeyDictionary()


def new_mail(label: str, log: list[str]) -> Mail:
    """A new :class:`Mail` whose on-commit ``post_save`` receiver appends its label to ``log``."""
    mail = Mail(label=label)
    _mail_logs[mail] = log
    return mail


#: The signal of ``Send(via="signal")``.
program_signal = Signal(name="program_signal")


def _on_program_signal(sender: Any, work: Callable[[], object], **kwargs: Any) -> None:
    work()


#: The signal of ``Send(via="async")``: its on_commit receiver is async.
program_async_signal = Signal(name="program_async_signal")


async def _on_program_async_signal(sender: Any, work: Callable[[], object], **kwargs: Any) -> None:
    await asyncio.sleep(0)  # awaited at the commit, in its place among the sync work
    work()


def defer_work(via: Via, work: Callable[[], object]) -> None:
    """Defer ``work`` with ``on_commit()``, or by sending :data:`program_signal` (``"signal"``)
    or :data:`program_async_signal` (``"async"``, for an AsyncSession).

    The signal routes need the block of :func:`receivers`.
    """
    if via == "function":
        on_commit(work)
    elif via == "signal":
        program_signal.send(None, work=work)
    elif via == "async":
        program_async_signal.send(None, work=work)
    else:
        raise ValueError(f"defer_work() takes 'function', 'signal' or 'async', not {via!r}")


def _on_mail_saved(sender: Any, instance: Mail, **kwargs: Any) -> None:
    _mail_logs[instance].append(instance.label)  # expired by the commit: reloaded from the row


METADATAS = (Base.metadata, _MailBase.metadata)


@contextlib.contextmanager
def receivers() -> Iterator[None]:
    """Instrument :class:`Mail` and connect the two on-commit receivers for the block."""
    with apps.isolated():
        instrument(_MailBase)
        program_signal.connect(_on_program_signal, delivery="on_commit")
        program_async_signal.connect(_on_program_async_signal, delivery="on_commit")
        post_save.connect(_on_mail_saved, sender=Mail, delivery="on_commit")
        try:
            yield
        finally:
            program_signal.disconnect(_on_program_signal)
            program_async_signal.disconnect(_on_program_async_signal)
            post_save.disconnect(_on_mail_saved, sender=Mail)


# -- SQLAlchemy --------------------------------------------------------------------------------


class Db:
    """One Session of one flavor, with awaitable operations for sync and async alike."""

    def __init__(self, session: Session | AsyncSession) -> None:
        self.session = session
        self.is_async = isinstance(session, AsyncSession)
        self.sync: Session = session.sync_session if isinstance(session, AsyncSession) else session

    async def call(self, name: str, *args: Any) -> Any:
        """Call the Session method ``name``, awaiting it under AsyncSession."""
        result = getattr(self.session, name)(*args)
        if self.is_async:
            return await result
        return result

    @contextlib.asynccontextmanager
    async def block(self, *, nested: bool) -> AsyncIterator[Any]:
        """``with session.begin()`` / ``begin_nested()``, sync or async."""
        if isinstance(self.session, AsyncSession):
            begin = self.session.begin_nested if nested else self.session.begin
            async with begin() as async_transaction:
                yield async_transaction
        else:
            start = self.session.begin_nested if nested else self.session.begin
            with start() as transaction:
                yield transaction


async def run_sqlalchemy(db: Db, program: Block, log: list[str]) -> None:
    """Run ``program`` on ``db``, deferring ``log.append(label)`` by each send's route."""
    await _run_block(db, program, log, nested=False)


async def _run_block(db: Db, block: Block, log: list[str], *, nested: bool) -> None:
    try:
        async with db.block(nested=nested) as transaction:
            for step in block.steps:
                if isinstance(step, Send):
                    await _send(db, step, log)
                elif isinstance(step, Flush):
                    db.session.add(Row(label="x"))
                    await db.call("flush")
                else:
                    await _run_block(db, step, log, nested=True)
            if block.outcome == "rollback":
                if db.is_async:
                    await transaction.rollback()
                else:
                    transaction.rollback()
            elif block.outcome == "raise":
                raise Boom
    except Boom:
        pass


async def _send(db: Db, step: Send, log: list[str]) -> None:
    if step.via in ("function", "signal", "async"):
        defer_work(step.via, functools.partial(log.append, step.label))
    else:
        db.session.add(new_mail(step.label, log))
        await db.call("flush")


@dataclass
class Flavor:
    """Engines of one flavor; ``session()`` opens a Session (or AsyncSession) on them."""

    name: str
    url: str | None = None
    engine: Engine | AsyncEngine | None = None
    extra: list[Any] = field(default_factory=list)

    @property
    def is_async(self) -> bool:
        return self.name.endswith("-async")

    def start(self) -> None:
        """Create the engine and the table."""
        if self.name == "sqlite":
            self.engine = create_engine("sqlite://", poolclass=StaticPool)
        elif self.name == "sqlite-async":
            self.engine = create_async_engine("sqlite+aiosqlite://", poolclass=StaticPool)
        elif self.name == "postgres":
            assert self.url is not None
            self.engine = create_engine(self.url.replace("postgresql:", "postgresql+psycopg:"))
        else:
            assert self.url is not None
            self.engine = create_async_engine(
                self.url.replace("postgresql:", "postgresql+asyncpg:")
            )

    async def create_tables(self) -> None:
        """Create the tables of :class:`Row` and :class:`Mail` (dropping leftovers first)."""
        for metadata in METADATAS:
            if isinstance(self.engine, AsyncEngine):
                async with self.engine.begin() as connection:
                    await connection.run_sync(metadata.drop_all)
                    await connection.run_sync(metadata.create_all)
            else:
                assert self.engine is not None
                metadata.drop_all(self.engine)
                metadata.create_all(self.engine)

    async def dispose(self) -> None:
        """Drop the tables and dispose of the engine."""
        if isinstance(self.engine, AsyncEngine):
            async with self.engine.begin() as connection:
                for metadata in METADATAS:
                    await connection.run_sync(metadata.drop_all)
            await self.engine.dispose()
        elif self.engine is not None:
            for metadata in METADATAS:
                metadata.drop_all(self.engine)
            self.engine.dispose()

    @contextlib.asynccontextmanager
    async def session(self, **options: Any) -> AsyncIterator[Db]:
        """Open a Session (AsyncSession for the async flavors), closed on exit."""
        if isinstance(self.engine, AsyncEngine):
            async with AsyncSession(self.engine, **options) as session:
                yield Db(session)
        else:
            with Session(self.engine, **options) as session:
                yield Db(session)


def run_flavor(flavor: Flavor, scenario: Callable[[Flavor], Awaitable[None]]) -> None:
    """Start ``flavor``, run ``scenario(flavor)`` in an event loop, dispose of it."""

    async def main() -> None:
        flavor.start()
        try:
            await flavor.create_tables()
            await scenario(flavor)
        finally:
            await flavor.dispose()

    asyncio.run(main())


def run_programs(flavor: Flavor, programs: list[Block]) -> list[list[str]]:
    """Run each program in a new Session of ``flavor``; return their logs."""
    logs: list[list[str]] = []

    async def scenario(flavor: Flavor) -> None:
        for program in programs:
            log: list[str] = []
            async with flavor.session() as db:
                await run_sqlalchemy(db, program, log)
            logs.append(log)

    with receivers():
        run_flavor(flavor, scenario)
    return logs


# -- Django ------------------------------------------------------------------------------------


def run_django_programs(programs: list[Block]) -> list[list[str]]:
    """Run each program with Django's ``atomic()`` and ``on_commit``; return their logs."""
    logs: list[list[str]] = []
    with django_ready(), _django_receivers():
        for program in programs:
            log: list[str] = []
            run_django(program, log)
            logs.append(log)
    return logs


def run_django(program: Block, log: list[str]) -> None:
    """Run ``program`` with Django's ``atomic()`` and ``transaction.on_commit`` (SQLite)."""
    _django_block(program, log)


def _django_block(block: Block, log: list[str]) -> None:
    from django.db import transaction

    from tests.oracle.lifecycle.models import Person

    try:
        with transaction.atomic():
            for step in block.steps:
                if isinstance(step, Send) and step.via == "function":
                    transaction.on_commit(functools.partial(log.append, step.label))
                elif isinstance(step, Send) and step.via in ("signal", "async"):
                    work = functools.partial(log.append, step.label)
                    django_program_signal().send(None, work=work)
                elif isinstance(step, Send):
                    person = Person(first_name=step.label, last_name=_MAIL)
                    person._log = log
                    person.save()
                elif isinstance(step, Flush):
                    Person.objects.create(first_name="x")
                else:
                    _django_block(step, log)
            if block.outcome == "rollback":
                transaction.set_rollback(True)
            elif block.outcome == "raise":
                raise Boom
    except Boom:
        pass


_MAIL = "mail"  # the last_name of the Person rows that stand for a Mail


@functools.cache
def django_program_signal() -> Any:
    """The Django twin of :data:`program_signal` (created once Django is importable)."""
    from django.dispatch import Signal as DjangoSignal

    return DjangoSignal()


@contextlib.contextmanager
def _django_receivers() -> Iterator[None]:
    """Connect the Django receivers that call ``transaction.on_commit`` for the block."""
    from django.db import transaction
    from django.db.models.signals import post_save as django_post_save

    from tests.oracle.lifecycle.models import Person

    def on_signal(sender: Any, work: Callable[[], object], **kwargs: Any) -> None:
        transaction.on_commit(work)

    def on_saved(sender: Any, instance: Any, **kwargs: Any) -> None:
        if instance.last_name == _MAIL:
            transaction.on_commit(lambda: instance._log.append(instance.first_name))

    signal = django_program_signal()
    signal.connect(on_signal, weak=False)
    django_post_save.connect(on_saved, sender=Person, weak=False)
    try:
        yield
    finally:
        signal.disconnect(on_signal)
        django_post_save.disconnect(on_saved, sender=Person)


@contextlib.contextmanager
def django_ready() -> Iterator[None]:
    """Django configured, with the Person table present (rows removed afterwards)."""
    from tests.oracle import setup_django

    setup_django()
    from django.db import connection

    from tests.oracle.lifecycle.models import Person

    if Person._meta.db_table not in connection.introspection.table_names():
        with connection.schema_editor() as editor:
            editor.create_model(Person)
    try:
        yield
    finally:
        Person.objects.all().delete()
