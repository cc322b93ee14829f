"""AsyncSession: when a receiver fails, the rest of its send stops before the flush fails."""

from __future__ import annotations

import asyncio
import gc
import warnings
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import object_session

import tidings.models as tm
from tests.integrations.sqlalchemy.conftest import Db, SqlaSide


@pytest.fixture(params=["sqlite-async", "postgres-async"])
def sqla_async(request: pytest.FixtureRequest) -> SqlaSide:
    """The SQLAlchemy side under AsyncSession, on aiosqlite and on asyncpg."""
    return SqlaSide(request.param, request)


@pytest.mark.parametrize("signal_name", ["pre_save", "post_save"])
def test_the_other_async_receivers_are_cancelled_and_leave_nothing_behind(
    sqla_async: SqlaSide, signal_name: str
) -> None:
    """One async receiver raises: the others are cancelled and awaited before the flush fails,
    and nothing they would have written reaches a later, unrelated commit."""
    signal = getattr(tm, signal_name)
    log: list[str] = []
    release = asyncio.Event()

    async def fails(**kwargs: Any) -> None:
        raise RuntimeError("receiver failed")

    async def audit(instance: Any, **kwargs: Any) -> None:
        session = object_session(instance)
        assert session is not None
        try:
            await release.wait()  # I/O that outlives the failing receiver
            session.add(sqla_async.models.Book(title=f"audit of {instance.name}"))
            log.append("audited")
        except asyncio.CancelledError:
            log.append("cancelled")
            raise

    async def scenario(db: Db) -> None:
        db.add(db.models.User(name="ada"))
        with pytest.raises(RuntimeError, match="receiver failed"):
            await db.commit()
        assert log == ["cancelled"]
        release.set()
        await asyncio.sleep(0.01)  # a receiver still running would add its row now
        await db.rollback()
        db.add(db.models.Person(first_name="unrelated"))
        await db.commit()
        counts = [
            await db.session.scalar(select(func.count()).select_from(model))
            for model in (db.models.User, db.models.Book, db.models.Person)
        ]
        assert counts == [0, 0, 1]

    signal.connect(audit, sender=sqla_async.models.User)
    signal.connect(fails, sender=sqla_async.models.User)
    try:
        sqla_async.run(scenario, ())
    finally:
        signal.disconnect(audit, sender=sqla_async.models.User)
        signal.disconnect(fails, sender=sqla_async.models.User)
    assert log == ["cancelled"]


def test_a_receiver_failing_when_called_leaves_no_coroutine_unawaited(
    sqla_async: SqlaSide,
) -> None:
    """Calling a later async receiver raises at once (a bad signature): the coroutines already
    made are closed unrun, not left for the garbage collector to warn about."""
    ran: list[str] = []

    async def first(**kwargs: Any) -> None:  # pragma: no cover - closed before it starts
        ran.append("first")

    async def second(required: Any, **kwargs: Any) -> None:  # pragma: no cover - never runs
        ran.append("second")

    async def scenario(db: Db) -> None:
        db.add(db.models.User(name="ada"))
        with pytest.raises(TypeError, match="required"):
            await db.flush()
        await db.rollback()

    tm.post_save.connect(first, sender=sqla_async.models.User)
    tm.post_save.connect(second, sender=sqla_async.models.User)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sqla_async.run(scenario, ())
            gc.collect()
    finally:
        tm.post_save.disconnect(first, sender=sqla_async.models.User)
        tm.post_save.disconnect(second, sender=sqla_async.models.User)
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []
    assert ran == []
