"""Async receivers: awaited inside AsyncSession's flush, run in a fresh loop by a sync Session."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import create_engine, delete, select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session, object_session
from sqlalchemy.pool import StaticPool

import tidings.models as tm
from tests.integrations.sqlalchemy.twins import build, declarative_base
from tidings import AsyncReceiversInEventLoopError
from tidings.sqlalchemy import asave, instrument


@pytest.fixture
def m() -> Any:
    """Fresh instrumented twin models."""
    base = declarative_base()
    instrument(base)
    return build(base)


async def _async_engine(m: Any) -> Any:
    engine = create_async_engine("sqlite+aiosqlite://", poolclass=StaticPool)
    async with engine.begin() as connection:
        await connection.run_sync(m.Base.metadata.create_all)
    return engine


def test_async_receivers_are_awaited_inside_async_session_flush(m: Any) -> None:
    """Under AsyncSession, sync receivers run first, then async ones are awaited, in the flush;
    an async receiver may add objects, which the same flush() writes."""
    order: list[str] = []

    def sync_receiver(instance: Any, **kwargs: Any) -> None:
        order.append(f"sync {instance.name}")

    async def async_receiver(instance: Any, created: bool, **kwargs: Any) -> None:
        await asyncio.sleep(0.01)
        order.append(f"async {instance.name}")
        if created:
            session = object_session(instance)
            assert session is not None
            session.add(m.Profile(user=instance))

    async def main() -> list[int]:
        engine = await _async_engine(m)
        async with AsyncSession(engine) as session:
            session.add(m.User(name="ada"))
            await session.flush()
            order.append("flushed")
            profiles = (await session.scalars(select(m.Profile.user_id))).all()
        await engine.dispose()
        return list(profiles)

    tm.post_save.connect(async_receiver, sender=m.User)
    tm.post_save.connect(sync_receiver, sender=m.User)
    try:
        profiles = asyncio.run(main())
    finally:
        tm.post_save.disconnect(async_receiver, sender=m.User)
        tm.post_save.disconnect(sync_receiver, sender=m.User)
    assert order == ["sync ada", "async ada", "flushed"]
    assert profiles == [1]


def test_async_receivers_of_load_delete_and_bulk_under_async_session(m: Any) -> None:
    """post_init on load, pre/post_delete, post_bulk_delete and asave() all await receivers."""
    seen: list[str] = []

    async def receiver(signal: Any, sender: Any, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        seen.append(f"{signal.name} {sender.__name__}")

    signals = [tm.post_init, tm.pre_save, tm.pre_delete, tm.post_delete, tm.post_bulk_delete]

    async def main() -> None:
        engine = await _async_engine(m)
        async with AsyncSession(engine) as session:
            session.add(m.Book(title="Emma"))
            await session.commit()
            session.expunge_all()
            for signal in signals:
                signal.connect(receiver, sender=m.Book)
            book = await session.get(m.Book, 1)
            await asave(session, book)
            await session.delete(book)
            await session.flush()
            await session.execute(delete(m.Book))
        await engine.dispose()

    try:
        asyncio.run(main())
    finally:
        for signal in signals:
            signal.disconnect(receiver, sender=m.Book)
    assert seen == [
        "post_init Book",
        "pre_save Book",
        "pre_delete Book",
        "post_delete Book",
        "post_bulk_delete Book",
    ]


def test_sync_session_runs_async_receivers_in_a_fresh_loop(m: Any) -> None:
    """A sync Session outside any event loop gets async receivers run like Signal.send does."""
    seen: list[int] = []

    async def receiver(instance: Any, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        seen.append(instance.id)

    engine = create_engine("sqlite://", poolclass=StaticPool)
    m.Base.metadata.create_all(engine)
    tm.post_save.connect(receiver, sender=m.Book)
    try:
        with Session(engine) as session:
            session.add(m.Book(title="Emma"))
            session.flush()
    finally:
        tm.post_save.disconnect(receiver, sender=m.Book)
        engine.dispose()
    assert seen == [1]


def test_sync_session_inside_a_running_loop_refuses_async_receivers(m: Any) -> None:
    """A sync Session used in async code cannot await async receivers: the error says to use
    AsyncSession (the core's "await signal.asend()" cannot be followed from ORM code)."""

    async def receiver(**kwargs: Any) -> None:  # pragma: no cover - never called
        raise AssertionError

    async def main() -> None:
        engine = create_engine("sqlite://", poolclass=StaticPool)
        m.Base.metadata.create_all(engine)
        with Session(engine) as session:
            session.add(m.Book(title="Emma"))
            with pytest.raises(AsyncReceiversInEventLoopError) as caught:
                session.flush()
            message = str(caught.value)
            assert "use sqlalchemy.ext.asyncio.AsyncSession" in message
            assert "pre_save" in message
            assert "asend" not in message
        engine.dispose()

    tm.pre_save.connect(receiver, sender=m.Book)
    try:
        asyncio.run(main())
    finally:
        tm.pre_save.disconnect(receiver, sender=m.Book)
