"""Transaction programs: one scenario run on SQLAlchemy (four flavors), on Django, and on a model.

A program is a :class:`Block` (the outermost transaction) of steps: ``Send(label)`` registers
work that logs ``label`` after the commit, ``Flush()`` writes a row, and an inner ``Block`` is a
savepoint. Each block ends in one of three ways: ``"commit"`` (released / committed),
``"rollback"`` (rolled back explicitly) or ``"raise"`` (an exception leaves its ``with`` block).
:func:`expected` is the model of the rules: the labels of the blocks that survive, in order,
when the outermost block commits, and nothing otherwise.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Integer, String, create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import StaticPool

from tidings.sqlalchemy import on_commit

Outcome = Literal["commit", "rollback", "raise"]
FLAVORS = ["sqlite", "sqlite-async", "postgres", "postgres-async"]


@dataclass(frozen=True)
class Send:
    """Register work that logs ``label`` after the commit."""

    label: str


@dataclass(frozen=True)
class Flush:
    """Add a row and flush it."""


@dataclass(frozen=True)
class Block:
    """A transaction (the outermost block) or a savepoint (any inner block)."""

    steps: tuple[Send | Flush | Block, ...] = ()
    outcome: Outcome = "commit"


Step = Send | Flush | Block


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
    """Run ``program`` on ``db``, registering ``log.append(label)`` with ``on_commit``."""
    await _run_block(db, program, log, nested=False)


async def _run_block(db: Db, block: Block, log: list[str], *, nested: bool) -> None:
    try:
        async with db.block(nested=nested) as transaction:
            for step in block.steps:
                if isinstance(step, Send):
                    on_commit(functools.partial(log.append, step.label))
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
        """Create the table of :class:`Row` (and drop a leftover one first)."""
        if isinstance(self.engine, AsyncEngine):
            async with self.engine.begin() as connection:
                await connection.run_sync(Base.metadata.drop_all)
                await connection.run_sync(Base.metadata.create_all)
        else:
            assert self.engine is not None
            Base.metadata.drop_all(self.engine)
            Base.metadata.create_all(self.engine)

    async def dispose(self) -> None:
        """Drop the table and dispose of the engine."""
        if isinstance(self.engine, AsyncEngine):
            async with self.engine.begin() as connection:
                await connection.run_sync(Base.metadata.drop_all)
            await self.engine.dispose()
        elif self.engine is not None:
            Base.metadata.drop_all(self.engine)
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
    import asyncio

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

    run_flavor(flavor, scenario)
    return logs


# -- Django ------------------------------------------------------------------------------------


def run_django_programs(programs: list[Block]) -> list[list[str]]:
    """Run each program with Django's ``atomic()`` and ``on_commit``; return their logs."""
    logs: list[list[str]] = []
    with django_ready():
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
                if isinstance(step, Send):
                    transaction.on_commit(functools.partial(log.append, step.label))
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
