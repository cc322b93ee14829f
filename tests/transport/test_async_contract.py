"""The asyncio face of the transports: the same contract, awaited, never blocking the loop."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tests.transport.conftest import MakeAsyncTransport
from tidings.transport import InMemoryTransport, NoSuchGroupError


def test_a_round_trip_through_every_operation(make_async_transport: MakeAsyncTransport) -> None:
    """Publish, consume, claim, keep_alive, ack, dedupe, dead letters and retry, awaited."""

    async def scenario() -> None:
        transport = make_async_transport()
        try:
            await transport.ensure_group("t", "g")
            ids = [await transport.publish("t", f"e{i}", b"x") for i in range(3)]
            got = await transport.consume("t", "g", "c1", block=0)
            assert [m.event_id for m in got] == ["e0", "e1", "e2"]
            assert await transport.keep_alive("t", "g", "c1", ids[:1]) == ids[:1]
            await asyncio.sleep(0.15)
            claimed = await transport.claim("t", "g", "c2", min_idle=0.1, count=1)
            assert [(m.event_id, m.deliveries) for m in claimed] == [("e0", 2)]
            assert await transport.ack("t", "g", ids[:2]) == 2
            assert await transport.mark_done("g", "e0") is True
            assert await transport.done("g", "e0") is True
            assert await transport.done_events("g", ["e0", "e9"]) == {"e0"}
            await transport.dead_letter("t", "g", got[2], "failed")
            assert [d.event_id for d in await transport.dead_letters("t", "g")] == ["e2"]
            assert await transport.retry("t", "g") == 1
            [status] = await transport.status(["t"])
            assert (status.length, status.pending, status.lag, status.dead) == (4, 0, 1, 0)
            assert await transport.remove_group("t", "g") is True
            assert await transport.status(["t"]) == []
        finally:
            await transport.close()

    asyncio.run(scenario())


def test_keep_alive_on_a_missing_group_raises(make_async_transport: MakeAsyncTransport) -> None:
    """An awaited keep_alive() of a missing group raises NoSuchGroupError, even with no ids."""

    async def scenario() -> None:
        transport = make_async_transport()
        try:
            await transport.publish("t", "e0", b"x")
            for wanted in ([], ["0-1"]):
                with pytest.raises(NoSuchGroupError):
                    await transport.keep_alive("t", "nope", "c1", wanted)
        finally:
            await transport.close()

    asyncio.run(scenario())


def test_consume_waits_without_blocking_the_loop(make_async_transport: MakeAsyncTransport) -> None:
    """While a consume() waits, other tasks run; a publish by another task wakes it."""

    async def scenario() -> None:
        transport = make_async_transport()
        try:
            await transport.ensure_group("t", "g")
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            task = asyncio.create_task(ticker())

            async def publish_later() -> None:
                await asyncio.sleep(0.3)
                await transport.publish("t", "late", b"x")

            publisher = asyncio.create_task(publish_later())
            started = time.monotonic()
            got = await transport.consume("t", "g", "c", block=10)
            waited = time.monotonic() - started
            task.cancel()
            await publisher
            assert [m.event_id for m in got] == ["late"]
            assert waited < 8
            assert ticks >= 3
        finally:
            await transport.close()

    asyncio.run(scenario())


def test_consume_gives_up_after_block(make_async_transport: MakeAsyncTransport) -> None:
    """An awaited consume() with nothing published returns empty after about ``block``."""

    async def scenario() -> None:
        transport = make_async_transport()
        try:
            await transport.ensure_group("t", "g")
            started = time.monotonic()
            assert await transport.consume("t", "g", "c", block=0.2) == []
            assert time.monotonic() - started >= 0.15
        finally:
            await transport.close()

    asyncio.run(scenario())


def test_the_async_face_shares_the_sync_transport() -> None:
    """InMemoryTransport().as_async() serves the same topics: a thread's publish is awaited."""
    sync = InMemoryTransport()
    sync.ensure_group("t", "g")
    sync.publish("t", "e0", b"x")

    async def read() -> list[str]:
        return [m.event_id for m in await sync.as_async().consume("t", "g", "c", block=0)]

    assert asyncio.run(read()) == ["e0"]


def test_a_publish_from_a_thread_wakes_an_awaited_consume() -> None:
    """A thread publishing on the sync face wakes a task waiting on the async face."""
    sync = InMemoryTransport()
    sync.ensure_group("t", "g")

    async def read() -> tuple[list[str], float]:
        timer = threading.Timer(0.2, sync.publish, ("t", "late", b"x"))
        timer.start()
        started = time.monotonic()
        got = await sync.as_async().consume("t", "g", "c", block=10)
        timer.join()
        return [m.event_id for m in got], time.monotonic() - started

    events, waited = asyncio.run(read())
    assert events == ["late"]
    assert waited < 8


def test_timed_out_waits_do_not_pile_up() -> None:
    """Each consume() that timed out leaves no waiter behind for the next publish."""
    sync = InMemoryTransport()
    sync.ensure_group("t", "g")

    async def idle() -> None:
        for _ in range(20):
            await sync.as_async().consume("t", "g", "c", block=0.01)

    asyncio.run(idle())
    assert sync._waiters == []
