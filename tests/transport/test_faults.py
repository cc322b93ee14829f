"""Transport fault tests: a private redis-server killed with SIGKILL, slow consumers.

Each test prints its counts (pushed, received, duplicated, lost). The servers are the tests'
own (a free port, a temporary directory), killed by PID; the shared Redis is never touched
except by the keep-alive test, under a key prefix of its own.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from tests.transport.conftest import MakeTransport
from tests.transport.servers import RedisServer
from tidings.transport import Message, NoSuchGroupError, Transport, TransportError

pytestmark = pytest.mark.fault

redis = pytest.importorskip("redis", reason='needs redis-py: pip install "tidings[redis]"')

from tidings.transport.redis import AsyncRedisTransport, RedisTransport  # noqa: E402

TOPIC = "shop.mail.send_receipt"
GROUP = "shop.mail.send_receipt"


@dataclass
class Tally:
    """What a run pushed and what its consumer saw."""

    accepted: list[str] = field(default_factory=list)
    publish_errors: int = 0
    runs: collections.Counter[str] = field(default_factory=collections.Counter)
    deliveries: int = 0
    skipped_as_done: int = 0
    consume_errors: int = 0
    groups_recreated: int = 0

    def counts(self) -> dict[str, int]:
        """pushed, received, duplicated (runs beyond the first), lost (pushed, never run)."""
        pushed = set(self.accepted)
        return {
            "pushed": len(pushed),
            "received": len(pushed & set(self.runs)),
            "duplicated": sum(n - 1 for n in self.runs.values()),
            "lost": len(pushed - set(self.runs)),
            "redelivered": self.deliveries - sum(self.runs.values()) - self.skipped_as_done,
            "skipped_as_done": self.skipped_as_done,
            "publish_errors": self.publish_errors,
            "consume_errors": self.consume_errors,
        }


def report(name: str, counts: dict[str, int]) -> None:
    """Print a fault test's counts."""
    print(f"\n{name}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


def publisher(transport: Transport, tally: Tally, total: int, stop: threading.Event) -> None:
    """Publish e0..e{total-1} in order; on a TransportError back off and publish it again."""
    n = 0
    while n < total and not stop.is_set():
        event_id = f"e{n}"
        try:
            transport.publish(TOPIC, event_id, event_id.encode())
        except TransportError:
            tally.publish_errors += 1
            time.sleep(0.05)
            continue
        tally.accepted.append(event_id)
        n += 1


def consumer(transport: Transport, tally: Tally, stop: threading.Event) -> None:
    """Claim idle entries, read new ones, run each event once per group, ack; back off on errors."""
    need_group = True
    while not stop.is_set():
        try:
            if need_group:
                transport.ensure_group(TOPIC, GROUP, start="first")
                need_group = False
                tally.groups_recreated += 1
            messages = transport.claim(TOPIC, GROUP, "worker", min_idle=1.0, count=50)
            messages += transport.consume(TOPIC, GROUP, "worker", count=50, block=0.2)
            for message in messages:
                handle(transport, tally, message)
        except NoSuchGroupError:
            need_group = True
        except TransportError:
            tally.consume_errors += 1
            time.sleep(0.05)


def handle(transport: Transport, tally: Tally, message: Message) -> None:
    """The receiver's side of one entry: skip it if done, else run and mark it; then ack."""
    tally.deliveries += 1
    if transport.done(GROUP, message.event_id):
        tally.skipped_as_done += 1
    else:
        tally.runs[message.event_id] += 1
        transport.mark_done(GROUP, message.event_id)
    transport.ack(TOPIC, GROUP, [message.id])


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.mark.parametrize(
    ("total", "kills"),
    [
        pytest.param(1200, 3, id="1200-events-3-kills"),
        pytest.param(20_000, 20, id="20000-events-20-kills", marks=pytest.mark.stress),
    ],
)
def test_redis_killed_mid_run_with_aof_always_loses_nothing(
    redis_server: Callable[..., RedisServer], total: int, kills: int
) -> None:
    """With AOF appendfsync always, every accepted publish survives SIGKILL and is run."""
    server = redis_server(aof=True)
    publishing = RedisTransport(server.url, socket_connect_timeout=1, socket_timeout=2)
    consuming = RedisTransport(server.url, socket_connect_timeout=1, socket_timeout=2)
    tally, stop = Tally(), threading.Event()
    threads = [
        threading.Thread(target=publisher, args=(publishing, tally, total, stop)),
        threading.Thread(target=consumer, args=(consuming, tally, stop)),
    ]
    for thread in threads:
        thread.start()
    try:
        for k in range(1, kills + 1):
            assert wait_for(_reached(tally, k * total // (kills + 1)), 30)
            server.kill()
            time.sleep(0.3)
            server.start()
        threads[0].join(40 + total / 100)
        assert wait_for(lambda: set(tally.accepted) <= set(tally.runs), 30 + total / 100)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    kept = {
        fields[b"event_id"].decode()
        for _, fields in publishing.client.xrange(publishing.ops.stream(TOPIC))
    }
    publishing.close()
    consuming.close()
    counts = tally.counts()
    counts["kills"] = server.starts - 1
    counts["missing_from_stream"] = len(set(tally.accepted) - kept)
    report(f"redis SIGKILL x{kills}, AOF appendfsync always", counts)
    assert counts["kills"] == kills
    assert counts["pushed"] == total
    assert counts["lost"] == 0
    assert counts["missing_from_stream"] == 0
    assert counts["publish_errors"] > 0


def test_redis_killed_without_persistence_loses_what_was_not_consumed(
    redis_server: Callable[..., RedisServer],
) -> None:
    """Without persistence a SIGKILL loses the stream, the group, pending entries and marks."""
    server = redis_server(aof=False)
    transport = RedisTransport(server.url, socket_connect_timeout=1, socket_timeout=2)
    tally = Tally()
    try:
        transport.ensure_group(TOPIC, GROUP)
        for n in range(200):
            transport.publish(TOPIC, f"e{n}", b"x")
            tally.accepted.append(f"e{n}")
        for message in transport.consume(TOPIC, GROUP, "worker", count=100, block=0):
            handle(transport, tally, message)
        in_flight = transport.consume(TOPIC, GROUP, "worker", count=20, block=0)
        server.kill()
        server.start()
        assert wait_for(lambda: _answers(transport), 10)
        with pytest.raises(NoSuchGroupError):
            transport.consume(TOPIC, GROUP, "worker", block=0)
        transport.ensure_group(TOPIC, GROUP)
        after = transport.consume(TOPIC, GROUP, "worker", count=1000, block=0)
        marks_kept = sum(transport.done(GROUP, e) for e in tally.runs)
        # What the outbox's re-publish can give back: the producer's record of every event.
        for event_id in tally.accepted:
            transport.publish(TOPIC, event_id, b"x")
        for message in transport.consume(TOPIC, GROUP, "worker", count=1000, block=0):
            handle(transport, tally, message)
    finally:
        transport.close()
    counts = tally.counts()
    counts.update(
        in_flight_lost=len(in_flight),
        left_after_restart=len(after),
        dedupe_marks_kept=marks_kept,
    )
    report("redis SIGKILL without persistence, then a full re-publish", counts)
    assert (len(after), marks_kept) == (0, 0)
    assert counts["lost"] == 0
    assert counts["duplicated"] == 100


def _reached(tally: Tally, goal: int) -> Callable[[], bool]:
    return lambda: len(tally.accepted) >= goal


def _answers(transport: RedisTransport) -> bool:
    try:
        return bool(transport.client.ping())
    except redis.RedisError:
        return False


def test_a_slow_consumer_keeping_its_claim_alive_is_not_claimed(
    make_transport: MakeTransport,
) -> None:
    """A receiver running 3x the claim idle time with keep_alive runs once; dead, it is claimed."""
    transport = make_transport()
    transport.ensure_group(TOPIC, GROUP)
    transport.publish(TOPIC, "slow-event", b"x")
    [held] = transport.consume(TOPIC, GROUP, "slow", block=0)
    # Refreshed every 0.1 s against a 1.5 s idle time: a thread starved for over a second on a
    # loaded machine still keeps its claim.
    min_idle, running = 1.5, threading.Event()
    running.set()
    stolen: list[Message] = []
    refreshes = 0

    def keep_alive() -> None:
        nonlocal refreshes
        while running.is_set():
            if transport.keep_alive(TOPIC, GROUP, "slow", [held.id]):
                refreshes += 1
            time.sleep(0.1)

    def other_worker(until: float) -> None:
        while time.monotonic() < until and not stolen:
            stolen.extend(transport.claim(TOPIC, GROUP, "other", min_idle=min_idle))
            time.sleep(0.05)

    refresher = threading.Thread(target=keep_alive)
    refresher.start()
    other_worker(time.monotonic() + 3 * min_idle)
    running.clear()
    refresher.join(5)
    stolen_while_alive = len(stolen)
    # The slow consumer "dies": nobody refreshes, the other worker takes the entry over.
    other_worker(time.monotonic() + 4 * min_idle)
    counts = {
        "pushed": 1,
        "claimed_while_alive": stolen_while_alive,
        "refreshes": refreshes,
        "claimed_after_death": len(stolen),
    }
    report("slow consumer with keep_alive", counts)
    assert stolen_while_alive == 0
    assert refreshes >= 5
    assert [(m.event_id, m.deliveries) for m in stolen] == [("slow-event", 2)]


def test_an_async_client_reconnects_after_redis_restarts(
    redis_server: Callable[..., RedisServer],
) -> None:
    """AsyncRedisTransport publishing across a SIGKILL and restart loses nothing it had sent."""
    server = redis_server(aof=True)
    total = 300

    async def scenario() -> dict[str, int]:
        transport = AsyncRedisTransport(server.url, socket_connect_timeout=1, socket_timeout=2)
        accepted: list[str] = []
        errors = 0
        try:
            await transport.ensure_group(TOPIC, GROUP)
            for n in range(total):
                if n == total // 2:
                    server.kill()
                    restart = threading.Timer(0.3, server.start)
                    restart.start()
                while True:
                    try:
                        await transport.publish(TOPIC, f"e{n}", b"x")
                    except TransportError:
                        errors += 1
                        await asyncio.sleep(0.05)
                        continue
                    accepted.append(f"e{n}")
                    break
            restart.join()
            received: set[str] = set()
            deadline = time.monotonic() + 20
            while len(received) < total and time.monotonic() < deadline:
                messages = await transport.consume(TOPIC, GROUP, "worker", count=100, block=0.2)
                received.update(m.event_id for m in messages)
                await transport.ack(TOPIC, GROUP, [m.id for m in messages])
        finally:
            await transport.close()
        return {
            "pushed": len(set(accepted)),
            "received": len(received),
            "lost": len(set(accepted) - received),
            "publish_errors": errors,
        }

    counts = asyncio.run(scenario())
    report("async client across a redis SIGKILL, AOF appendfsync always", counts)
    assert (counts["pushed"], counts["lost"]) == (total, 0)
    assert counts["publish_errors"] > 0
