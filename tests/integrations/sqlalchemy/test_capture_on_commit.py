"""tidings.testing.capture_on_commit: Django's captureOnCommitCallbacks for SQLAlchemy Sessions."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from tests.integrations.sqlalchemy.programs import Row
from tidings.sqlalchemy import on_commit
from tidings.testing import capture_on_commit


@pytest.fixture
def session() -> Iterator[Session]:
    """A sync Session on SQLite with the Row table."""
    engine = create_engine("sqlite://", poolclass=StaticPool)
    Row.metadata.create_all(engine)
    with Session(engine) as session:
        yield session
    engine.dispose()


def test_captured_work_is_listed_in_order_and_does_not_run_at_commit(session: Session) -> None:
    """The list holds the pending callables in registration order, without those of a
    rolled-back savepoint; the commit inside the block does not run them."""
    log: list[str] = []
    first = functools.partial(log.append, "first")
    dropped = functools.partial(log.append, "dropped")
    last = functools.partial(log.append, "last")
    with capture_on_commit() as callbacks:
        session.add(Row())
        on_commit(first)
        savepoint = session.begin_nested()
        on_commit(dropped)
        savepoint.rollback()
        on_commit(last)
        session.commit()
        assert callbacks == []
    assert callbacks == [first, last]
    assert log == []
    session.add(Row())
    session.commit()
    assert log == []


def test_execute_runs_the_work_on_exit_like_a_commit(session: Session) -> None:
    """execute=True runs the captured work on exit, robustly, including the work it defers
    while it runs, which is listed too."""
    log: list[str] = []

    def first() -> None:
        log.append("first")
        session.add(Row())
        on_commit(functools.partial(log.append, "deferred by first"))

    def broken() -> None:
        raise RuntimeError("boom")

    with capture_on_commit(execute=True) as callbacks:
        session.add(Row())
        on_commit(first)
        on_commit(broken)
        on_commit(functools.partial(log.append, "last"))
    assert log == ["first", "last", "deferred by first"]
    assert len(callbacks) == 4
    assert callbacks[:2] == [first, broken]
    session.rollback()
    assert log == ["first", "last", "deferred by first"]


def test_a_block_that_raises_runs_nothing(session: Session) -> None:
    """When the block raises, execute=True runs nothing; the list is still filled."""
    log: list[str] = []
    work = functools.partial(log.append, "work")

    def block() -> list[Any]:
        with capture_on_commit(execute=True) as callbacks:
            session.add(Row())
            on_commit(work)
            seen.append(callbacks)
            raise LookupError

    seen: list[list[Any]] = []
    with pytest.raises(LookupError):
        block()
    callbacks = seen[0]
    assert callbacks == [work]
    assert log == []


def test_only_the_given_session_is_captured(session: Session) -> None:
    """With session=, the work of other Sessions runs at their commits; work with no
    transaction open runs at once and is not captured."""
    log: list[str] = []
    other = Session(session.get_bind())
    try:
        with capture_on_commit(session) as callbacks:
            on_commit(functools.partial(log.append, "at once"))
            other.add(Row())
            on_commit(functools.partial(log.append, "other"), session=other)
            other.commit()
            session.add(Row())
            on_commit(functools.partial(log.append, "captured"), session=session)
        assert [c.args for c in callbacks] == [("captured",)]  # type: ignore[attr-defined]
        assert log == ["at once", "other"]
    finally:
        other.close()


def test_an_async_session_is_captured_and_its_work_awaited_by_the_test() -> None:
    """capture_on_commit(async_session) takes async callables; the test awaits them itself
    (execute=True cannot await from the running loop)."""
    log: list[str] = []

    async def callback() -> None:
        log.append("awaited")

    async def main() -> None:
        engine = create_async_engine("sqlite+aiosqlite://", poolclass=StaticPool)
        async with AsyncSession(engine) as session:
            await session.begin()
            with capture_on_commit(session) as callbacks:
                on_commit(callback)
                await session.commit()
            assert log == []
            for captured in callbacks:
                await captured()
        await engine.dispose()

    asyncio.run(main())
    assert log == ["awaited"]


def test_the_pytest_fixture(session: Session, capture_on_commit_callbacks: Any) -> None:
    """The capture_on_commit_callbacks fixture is capture_on_commit."""
    log: list[str] = []
    with capture_on_commit_callbacks(execute=True) as callbacks:
        session.add(Row())
        on_commit(functools.partial(log.append, "ran"))
    assert log == ["ran"]
    assert len(callbacks) == 1
