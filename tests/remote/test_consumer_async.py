"""The asyncio pool: tasks of one loop, plain receivers in threads, on memory and on Redis.

The behaviours both pools share (dedupe, retries, dead letters, claims, stopping) are tested
with each pool in ``test_consumer.py``; these are the asyncio pool's own, and its round trip
on a real Redis.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, cast

import pytest
from sqlalchemy import create_engine

from tests.remote.test_consumer import Calls, calls, publish, spec, wait_for
from tests.transport.conftest import MakeTransport, make_transport
from tidings._errors import TidingsValueError
from tidings.outbox import AsyncConsumer, Consumer, Event, Outbox
from tidings.outbox._remote import topic_name
from tidings.transport import InMemoryTransport, Transport

# Fixtures: the call log, and the transport tests' transports (memory, Redis, Redis RESP3).
__all__ = ["calls", "make_transport"]


def tasks(carrier: Transport, *specs: Any, **options: Any) -> AsyncConsumer:
    """An asyncio consumer of ``specs`` with short waits."""
    options.setdefault("node", "node-a")
    options.setdefault("block", 0.05)
    return AsyncConsumer(carrier, specs, **options)


def test_async_receivers_run_concurrently_on_one_thread() -> None:
    """With concurrency 4, four awaiting receivers are in flight at once, on the loop's thread."""
    carrier = InMemoryTransport()
    state = {"now": 0, "most": 0}
    threads: set[int] = set()

    async def mail(sender: Any, n: int, event: Event, **kwargs: Any) -> None:
        threads.add(threading.get_ident())
        state["now"] += 1
        state["most"] = max(state["most"], state["now"])
        await asyncio.sleep(0.2)
        state["now"] -= 1

    worker = tasks(carrier, spec(mail, timeout=5.0), concurrency=4, prefetch=1)
    worker.ensure_groups()
    for n in range(8):
        publish(carrier, n)
    worker.run(once=True)
    print(f"\nasyncio pool: {worker.stats.done} done, at most {state['most']} in flight")
    assert worker.stats.done == 8
    assert state["most"] == 4
    assert len(threads) == 1
    assert threading.get_ident() in threads  # run() hosts the loop in the calling thread


def test_a_plain_receiver_runs_in_a_thread_off_the_loop(calls: Calls) -> None:
    """A sync receiver is called in another thread than the loop's (it may block)."""
    carrier = InMemoryTransport()
    where: list[int] = []

    def mail(sender: Any, n: int, event: Event, **kwargs: Any) -> None:
        where.append(threading.get_ident())
        calls.add("mail", n, event)

    worker = tasks(carrier, spec(mail))
    worker.ensure_groups()
    publish(carrier, 5)
    worker.run(once=True)
    assert calls.numbers() == [5]
    assert where != [threading.get_ident()]


def test_an_async_receiver_over_its_timeout_fails_and_becomes_a_dead_letter() -> None:
    """An attempt longer than the receiver's timeout is a failure, retried, then buried."""
    carrier = InMemoryTransport()
    attempts: list[int] = []

    async def hang(sender: Any, n: int, event: Event, **kwargs: Any) -> None:
        attempts.append(event.attempt)
        await asyncio.sleep(5)

    worker = tasks(
        carrier, spec(hang, timeout=0.1, max_attempts=2), claim_idle=0.3, claim_interval=0.05
    )
    worker.ensure_groups()
    publish(carrier, 1)
    with worker:
        wait_for(lambda: worker.stats.dead == 1)
    (letter,) = carrier.dead_letters(topic_name("shop.mail"), "shop.mail")
    assert attempts == [1, 2]
    assert worker.stats.failed == 1
    assert letter.reason.startswith(
        "TimeoutError: async receiver shop.mail of shop.ordered did not finish within "
        "its timeout of 0.1 s"
    )


def test_a_transport_without_an_asyncio_face_is_refused() -> None:
    """A transport lacking ``as_async()`` is refused at once unless ``async_transport`` is given."""

    def mail(sender: Any, **kwargs: Any) -> None: ...

    bare = cast(Transport, object())
    with pytest.raises(TidingsValueError, match=r"no asyncio face \(as_async\(\)\)"):
        tasks(bare, spec(mail))
    face = InMemoryTransport().as_async()
    assert tasks(bare, spec(mail), async_transport=face).lanes[0].group == "shop.mail"


def test_outbox_consumer_picks_the_pool_by_name() -> None:
    """``Outbox.consumer(pool=...)``: threads by default, asyncio on request, else refused."""
    box = Outbox(create_engine("sqlite://"), transport=InMemoryTransport())

    def mail(sender: Any, **kwargs: Any) -> None: ...

    receivers = [spec(mail)]
    assert type(box.consumer(receivers=receivers)) is Consumer
    assert type(box.consumer(receivers=receivers, pool="asyncio")) is AsyncConsumer
    with pytest.raises(TidingsValueError, match=r"pool must be .*, not 'processes'"):
        box.consumer(receivers=receivers, pool="processes")


def test_the_asyncio_pool_round_trip_on_each_transport(make_transport: MakeTransport) -> None:
    """Two asyncio consumers of a queue run each event once; a re-published one is skipped;
    a poison one is a dead letter after max_attempts."""
    carrier = make_transport()
    ran: list[int] = []
    lock = threading.Lock()

    async def mail(sender: Any, n: int, event: Event, **kwargs: Any) -> None:
        await asyncio.sleep(0.01)
        if n < 0:
            raise RuntimeError("poison")
        with lock:
            ran.append(n)

    receiver = spec(mail, timeout=1.0, max_attempts=2)
    options: dict[str, Any] = {"claim_idle": 2.0, "claim_interval": 0.05, "concurrency": 2}
    a = tasks(carrier, receiver, name="host:1", **options)
    b = tasks(carrier, receiver, name="host:2", **options)
    a.ensure_groups()
    first = publish(carrier, 0)
    for n in range(1, 20):
        publish(carrier, n)
    with a, b:
        wait_for(lambda: len(ran) == 20, 30)
        publish(carrier, 0, event_id=first)  # the relay published it again
        publish(carrier, -1)
        wait_for(lambda: a.stats.dead + b.stats.dead == 1, 30)
        wait_for(lambda: a.stats.skipped + b.stats.skipped == 1, 30)
        time.sleep(0.2)
    done, skipped = a.stats.done + b.stats.done, a.stats.skipped + b.stats.skipped
    print(f"\nasyncio pool on {carrier!r}: {done} done, {skipped} skipped")
    assert sorted(ran) == list(range(20))
    assert (done, skipped) == (20, 1)
    (state,) = carrier.status([topic_name("shop.mail")])
    assert (state.pending, state.lag, state.dead) == (0, 0, 1)


def test_a_redis_transport_given_a_client_has_no_asyncio_face() -> None:
    """``as_async()`` of a RedisTransport made from a client names what to do instead."""
    redis = pytest.importorskip("redis")
    from tidings.transport.redis import RedisTransport

    carrier = RedisTransport(client=redis.Redis())
    with pytest.raises(TidingsValueError, match="create an AsyncRedisTransport"):
        carrier.as_async()
