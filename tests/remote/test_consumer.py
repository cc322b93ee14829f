"""The consumer on the in-memory transport: groups, dedupe, retries, dead letters, claims.

Every test runs with both pools: threads (:class:`Consumer`) and asyncio tasks
(:class:`AsyncConsumer`).
"""

from __future__ import annotations

import asyncio
import datetime
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tidings import Signal
from tidings._errors import TidingsValueError
from tidings.outbox import DurableReceiver, Event
from tidings.outbox._codec import encode
from tidings.outbox._consumer import Consumer
from tidings.outbox._consumer_async import AsyncConsumer
from tidings.outbox._remote import seal, topic_name
from tidings.transport import Transport
from tidings.transport.memory import InMemoryTransport

ordered = Signal(name="shop.ordered")


class Calls:
    """What receivers were called with, from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[str, int, Event]] = []

    def add(self, who: str, n: int, event: Event) -> None:
        with self.lock:
            self.seen.append((who, n, event))

    def numbers(self, who: str | None = None) -> list[int]:
        with self.lock:
            return sorted(n for w, n, _ in self.seen if who is None or w == who)


@pytest.fixture
def calls() -> Calls:
    """A fresh call log."""
    return Calls()


#: The pool each test's transport is consumed with (see the ``transport`` fixture).
POOLS: weakref.WeakKeyDictionary[InMemoryTransport, type[Consumer]] = weakref.WeakKeyDictionary()


@pytest.fixture(params=[Consumer, AsyncConsumer], ids=["threads", "asyncio"])
def transport(request: pytest.FixtureRequest) -> Iterator[InMemoryTransport]:
    """An in-memory transport, closed afterwards; its consumers use the pool of the param."""
    carrier = InMemoryTransport()
    POOLS[carrier] = request.param
    yield carrier
    carrier.close()


def spec(
    func: Callable[..., Any], mode: str = "queue", name: str = "shop.mail", **options: Any
) -> DurableReceiver:
    """A queue or broadcast receiver of ``ordered``."""
    return DurableReceiver(ordered, name, func, delivery=mode, **options)


def publish(
    carrier: Transport,
    n: int,
    *,
    receiver: str = "shop.mail",
    event_id: str | None = None,
    payload: str | None = None,
    fmt: int = 1,
) -> str:
    """Publish the entry a relay would for a send of ``ordered`` with ``n=n``."""
    event_id = event_id or str(uuid.uuid4())
    text = payload if payload is not None else encode({"sender": None, "n": n}, lambda a: a)
    now = datetime.datetime.now(datetime.timezone.utc)
    body = seal(fmt, "shop.ordered", receiver, now, text)
    carrier.publish(topic_name(receiver), event_id, body)
    return event_id


def consumer(carrier: InMemoryTransport, *specs: DurableReceiver, **options: Any) -> Consumer:
    """A consumer of ``specs`` with short waits, of the pool the transport is tested with."""
    options.setdefault("node", "node-a")
    options.setdefault("block", 0.05)
    return POOLS.get(carrier, Consumer)(carrier, specs, **options)


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``check()`` holds, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


def test_a_queue_receiver_runs_each_entry_once_with_the_rebuilt_arguments(
    transport: InMemoryTransport, calls: Calls
) -> None:
    """Draining a queue group runs the receiver once per entry with ``n`` and ``event``."""

    def mail(sender: Any, n: int, event: Event, **kwargs: Any) -> None:
        calls.add("mail", n, event)

    worker = consumer(transport, spec(mail))
    worker.ensure_groups()
    ids = [publish(transport, n) for n in range(5)]
    worker.run(once=True)
    assert calls.numbers() == [0, 1, 2, 3, 4]
    assert [str(event.id) for _, _, event in calls.seen] == ids
    assert {(e.attempt, e.signal, e.receiver) for _, _, e in calls.seen} == {
        (1, "shop.ordered", "shop.mail")
    }
    (state,) = transport.status()
    assert (state.group, state.pending, state.lag) == ("shop.mail", 0, 0)


def test_a_queue_group_created_late_reads_what_was_published_before(
    transport: InMemoryTransport, calls: Calls
) -> None:
    """A queue receiver's first worker still runs the entries published before it started."""

    def mail(sender: Any, n: int, event: Event, **kwargs: Any) -> None:
        calls.add("mail", n, event)

    for n in range(3):
        publish(transport, n)
    consumer(transport, spec(mail)).run(once=True)
    assert calls.numbers() == [0, 1, 2]


def test_two_workers_of_a_queue_split_the_entries(
    transport: InMemoryTransport, calls: Calls
) -> None:
    """Two consumers of one queue group run disjoint sets that cover every entry."""

    def first(sender: Any, n: int, event: Event, **kwargs: Any) -> None:
        calls.add("a", n, event)
        time.sleep(0.002)

    def second(sender: Any, n: int, event: Event, **kwargs: Any) -> None:
        calls.add("b", n, event)
        time.sleep(0.002)

    a = consumer(transport, spec(first), name="host:1", prefetch=2)
    b = consumer(transport, spec(second), name="host:2", prefetch=2)
    a.ensure_groups()
    for n in range(60):
        publish(transport, n)
    with a, b:
        wait_for(lambda: len(calls.seen) >= 60)
    assert calls.numbers() == list(range(60))
    assert calls.numbers("a")
    assert calls.numbers("b")


def test_every_node_runs_every_broadcast_entry(transport: InMemoryTransport, calls: Calls) -> None:
    """Two nodes on a broadcast receiver each run every entry published after they joined."""

    def on_a(sender: Any, n: int, event: Event, **kwargs: Any) -> None:
        calls.add("a", n, event)

    def on_b(sender: Any, n: int, event: Event, **kwargs: Any) -> None:
        calls.add("b", n, event)

    a = consumer(transport, spec(on_a, "broadcast"), node="web-1")
    b = consumer(transport, spec(on_b, "broadcast"), node="web-2")
    a.ensure_groups()
    b.ensure_groups()
    for n in range(10):
        publish(transport, n)
    a.run(once=True)
    b.run(once=True)
    assert calls.numbers("a") == list(range(10))
    assert calls.numbers("b") == list(range(10))
    assert sorted(s.group for s in transport.status()) == ["shop.mail@web-1", "shop.mail@web-2"]


def test_a_new_broadcast_node_starts_with_new_entries(
    transport: InMemoryTransport, calls: Calls
) -> None:
    """A node whose group did not exist yet does not run the entries published before it."""

    def on(sender: Any, n: int, event: Event, **kwargs: Any) -> None:
        calls.add("a", n, event)

    publish(transport, 0)
    worker = consumer(transport, spec(on, "broadcast"), node="late")
    worker.ensure_groups()
    publish(transport, 1)
    worker.run(once=True)
    assert calls.numbers() == [1]


def test_a_republished_event_runs_once_per_group(
    transport: InMemoryTransport, calls: Calls
) -> None:
    """An entry published twice with one event id runs once; the copy is acknowledged."""

    def mail(sender: Any, n: int, event: Event, **kwargs: Any) -> None:
        calls.add("mail", n, event)

    worker = consumer(transport, spec(mail))
    worker.ensure_groups()
    event_id = publish(transport, 7)
    publish(transport, 7, event_id=event_id)
    worker.run(once=True)
    assert calls.numbers() == [7]
    assert (worker.stats.done, worker.stats.skipped) == (1, 1)
    assert transport.status()[0].pending == 0


def test_a_failed_attempt_is_retried_after_the_claim_idle_time(
    transport: InMemoryTransport, calls: Calls
) -> None:
    """A receiver that raises once runs again, ``event.attempt`` 2, after ``claim_idle``."""

    def flaky(sender: Any, n: int, event: Event, **kwargs: Any) -> None:
        calls.add("flaky", n, event)
        if event.attempt == 1:
            raise RuntimeError("mail server busy")

    worker = consumer(transport, spec(flaky), claim_idle=0.2, claim_interval=0.05)
    worker.ensure_groups()
    publish(transport, 1)
    started = time.monotonic()
    with worker:
        wait_for(lambda: len(calls.seen) == 2)
        wait_for(lambda: worker.stats.done == 1)
    assert time.monotonic() - started >= 0.2
    assert [event.attempt for _, _, event in calls.seen] == [1, 2]
    assert worker.stats.failed == 1
    assert transport.status()[0].pending == 0


def test_a_poison_entry_becomes_a_dead_letter_and_retry_delivers_it_again(
    transport: InMemoryTransport, calls: Calls
) -> None:
    """After ``max_attempts`` failures the entry is a dead letter; ``retry`` runs it anew."""
    healed = threading.Event()

    def poison(sender: Any, n: int, event: Event, **kwargs: Any) -> None:
        calls.add("poison", n, event)
        if not healed.is_set():
            raise ValueError(f"cannot handle {n}")

    receiver = spec(poison, max_attempts=3)
    worker = consumer(transport, receiver, claim_idle=0.1, claim_interval=0.02)
    worker.ensure_groups()
    event_id = publish(transport, 5)
    with worker:
        wait_for(lambda: worker.stats.dead == 1)
    assert [event.attempt for _, _, event in calls.seen] == [1, 2, 3]
    (letter,) = transport.dead_letters(topic_name("shop.mail"), "shop.mail")
    assert letter.event_id == event_id
    assert letter.deliveries == 3
    assert letter.reason.startswith("ValueError: cannot handle 5")
    assert transport.status()[0].pending == 0
    healed.set()
    assert transport.retry(topic_name("shop.mail"), "shop.mail") == 1
    again = consumer(transport, receiver)
    again.run(once=True)
    assert [event.attempt for _, _, event in calls.seen] == [1, 2, 3, 1]
    assert again.stats.done == 1


def test_a_slow_receiver_keeps_its_claim_while_alive(
    transport: InMemoryTransport, calls: Calls
) -> None:
    """A receiver running three times the claim idle time is not taken over by another worker."""

    def slow(sender: Any, n: int, event: Event, **kwargs: Any) -> None:
        calls.add("slow", n, event)
        time.sleep(0.6)

    a = consumer(transport, spec(slow), name="host:1", claim_idle=0.2, claim_interval=0.02)
    b = consumer(transport, spec(slow), name="host:2", claim_idle=0.2, claim_interval=0.02)
    a.ensure_groups()
    publish(transport, 1)
    with a:
        wait_for(lambda: len(calls.seen) == 1)
        with b:
            wait_for(lambda: a.stats.done == 1)
            time.sleep(0.3)
    assert len(calls.seen) == 1
    assert b.stats.claimed == 0


def test_an_unreadable_entry_is_a_dead_letter_at_once(transport: InMemoryTransport) -> None:
    """An entry whose body is no envelope goes to the dead letters without any attempt."""

    def never(sender: Any, **kwargs: Any) -> None:
        raise AssertionError("called")

    worker = consumer(transport, spec(never))
    worker.ensure_groups()
    transport.publish(topic_name("shop.mail"), str(uuid.uuid4()), b"not json")
    publish(transport, 1, fmt=99)
    worker.run(once=True)
    letters = transport.dead_letters(topic_name("shop.mail"), "shop.mail")
    assert [letter.reason.split(":")[0] for letter in letters] == [
        "unreadable entry",
        "stored in format 99; this release of tidings reads formats up to 1",
    ]


def test_stop_lets_the_running_receiver_finish_and_acknowledge(
    transport: InMemoryTransport, calls: Calls
) -> None:
    """``close()`` during a receiver waits for it, acknowledges its entry and returns."""
    running = threading.Event()

    def slow(sender: Any, n: int, event: Event, **kwargs: Any) -> None:
        running.set()
        time.sleep(0.3)
        calls.add("slow", n, event)

    worker = consumer(transport, spec(slow), prefetch=1)
    worker.ensure_groups()
    publish(transport, 1)
    publish(transport, 2)
    worker.start()
    running.wait(5)
    worker.close()
    assert calls.numbers() == [1]
    (state,) = transport.status()
    assert (state.pending, state.lag) == (0, 1)


def test_an_async_receiver_is_awaited(transport: InMemoryTransport, calls: Calls) -> None:
    """An ``async def`` queue receiver runs on the worker thread's loop."""

    async def mail(sender: Any, n: int, event: Event, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        calls.add("mail", n, event)

    worker = consumer(transport, spec(mail, timeout=1.0))
    worker.ensure_groups()
    publish(transport, 3)
    worker.run(once=True)
    assert calls.numbers() == [3]


def test_a_timeout_not_shorter_than_the_claim_idle_time_is_refused(
    transport: InMemoryTransport,
) -> None:
    """A receiver whose timeout reaches ``claim_idle`` is refused, naming both values."""

    async def mail(sender: Any, **kwargs: Any) -> None: ...

    with pytest.raises(TidingsValueError, match=r"timeout \(30.0 s\).*claim_idle \(10.0 s\)"):
        consumer(transport, spec(mail, timeout=30.0), claim_idle=10.0)


def test_a_durable_receiver_is_refused(transport: InMemoryTransport) -> None:
    """A consumer runs queue and broadcast receivers only, naming the one it refuses."""

    def mail(sender: Any, **kwargs: Any) -> None: ...

    with pytest.raises(TidingsValueError, match=r"'shop.mail'.*'durable'"):
        consumer(transport, spec(mail, "durable"))
