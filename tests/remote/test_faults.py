"""Queue and broadcast delivery with real worker processes on Redis, some killed by SIGKILL.

Each test prints its counts (pushed, delivered, duplicated, lost). The short versions run in
the suite (marker ``fault``); the long ones are marked ``stress``.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.outbox.processes import Counts, count
from tests.remote.conftest import Site, Worker, start_workers, stop_all, wait_for
from tests.transport.servers import RedisServer

pytestmark = [pytest.mark.fault, pytest.mark.redis]

WELCOME = "accounts.send_welcome"
CACHE = "accounts.refresh_cache"
FAILS = "accounts.always_fails"


def report(name: str, counts: Counts, extra: str = "") -> None:
    """Print a fault test's counts."""
    print(f"\n{name}: {counts}{extra}")


def test_three_queue_workers_run_disjoint_sets_that_cover_every_event(
    site: Site, workers: list[Worker]
) -> None:
    """Three worker processes on one queue receiver: each event runs on exactly one of them."""
    box = site.outbox()
    start_workers(
        site, workers, 3, "--receiver", WELCOME, "--prefetch", "2", TIDINGS_TEST_SLEEP="0.003"
    )
    pushed = site.push(box, 300, WELCOME)
    wait_for(lambda: len(site.calls(WELCOME)) >= 300, 40, "300 calls")
    assert stop_all(workers) == [0, 0, 0]
    calls = site.calls(WELCOME)
    by_worker: dict[int, set[str]] = {}
    for event_id, _, pid in calls:
        by_worker.setdefault(pid, set()).add(event_id)
    counts = count(pushed, [event_id for event_id, _, _ in calls])
    report("queue, three workers", counts, f"; per worker {sorted(map(len, by_worker.values()))}")
    assert (counts.lost, counts.duplicated) == (0, 0)
    sets = list(by_worker.values())
    assert len(sets) == 3
    assert sum(map(len, sets)) == len(set().union(*sets)) == 300


def kill_and_replace(
    site: Site, workers: list[Worker], rng: random.Random, args: list[str]
) -> None:
    """SIGKILL one running worker (chosen at random) and start a new one in its place."""
    victim = rng.choice([worker for worker in workers if worker.running()])
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(10)
    workers.append(site.worker(*args, TIDINGS_TEST_SLEEP="0.02"))


def progressed(site: Site, seen: int, events: int | None = None) -> Callable[[], bool]:
    """A check that more calls than ``seen`` were recorded, or that all ``events`` have run.

    The second half (when ``events`` is given) keeps a fast drain from stalling a kill
    schedule: once the workers have run every event (which a loaded machine's slow kill loop
    can let happen), no call is left to wait for, and the remaining kills hit idle workers,
    whose replacements must still start.
    """

    def check() -> bool:
        calls = site.calls(WELCOME)
        return len(calls) > seen or (events is not None and len({c[0] for c in calls}) >= events)

    return check


def run_kills(site: Site, workers: list[Worker], events: int, kills: int) -> None:
    """Three queue workers, ``kills`` of them SIGKILLed mid-receiver; all events finish."""
    box = site.outbox()
    args = ["--receiver", WELCOME, "--prefetch", "1", "--claim-idle", "1"]
    start_workers(site, workers, 3, *args, TIDINGS_TEST_SLEEP="0.02")
    pushed = site.push(box, events, WELCOME)
    rng = random.Random(events)
    busy = 0  # kills made while some event had not run yet
    for _ in range(kills):
        wait_for(progressed(site, len(site.calls(WELCOME)), events), 30, "progress")
        time.sleep(rng.uniform(0.0, 0.05))  # somewhere inside a 20 ms receiver, mostly
        busy += len({c[0] for c in site.calls(WELCOME)}) < events
        kill_and_replace(site, workers, rng, args)
    wait_for(lambda: len({c[0] for c in site.calls(WELCOME)}) >= events, 60, "every event")
    running = [worker for worker in workers if worker.running()]
    wait_for(lambda: all(w.ready() for w in running), 60, "the last replacements consuming")
    codes = stop_all(running)
    calls = site.calls(WELCOME)
    counts = count(pushed, [event_id for event_id, _, _ in calls])
    again = [attempt for _, attempt, _ in calls if attempt > 1]
    report(
        f"queue, {kills} workers SIGKILLed",
        counts,
        f"; kills before the last event ran: {busy}; runs with attempt > 1: {len(again)}"
        f"; workers started {len(workers)}",
    )
    assert set(codes) == {0}
    assert counts.lost == 0
    # Only the entry a killed worker was running can run again: one per kill at most.
    assert counts.duplicated <= kills
    times = Counter(event_id for event_id, _, _ in calls)
    attempts = {event_id: a for event_id, a, _ in calls if times[event_id] > 1}
    assert all(attempts[event_id] >= 2 for event_id in attempts)


def test_a_worker_killed_mid_receiver_has_its_entries_finished_by_the_others(
    site: Site, workers: list[Worker]
) -> None:
    """Workers SIGKILLed mid-receiver five times: the others claim their entries, none lost."""
    run_kills(site, workers, events=300, kills=5)


@pytest.mark.stress
def test_many_kills_stress(site: Site, workers: list[Worker]) -> None:
    """The same with 1,000 events and 30 kills."""
    run_kills(site, workers, events=1000, kills=30)


def test_three_broadcast_nodes_each_run_every_event_once(site: Site, workers: list[Worker]) -> None:
    """Three nodes on a broadcast receiver: every node runs every event exactly once."""
    box = site.outbox()
    for node in ("web-1", "web-2", "web-3"):
        start_workers(site, workers, 1, "--receiver", CACHE, "--node", node)
    pushed = site.push(box, 100, CACHE)
    wait_for(lambda: len(site.calls(CACHE)) >= 300, 40, "300 calls")
    assert stop_all(workers) == [0, 0, 0]
    calls = site.calls(CACHE)
    per_node = Counter(pid for _, _, pid in calls)
    for worker in workers:
        ran = [event_id for event_id, _, pid in calls if pid == worker.pid]
        counts = count(pushed, ran)
        report(f"broadcast, node pid {worker.pid}", counts)
        assert (counts.delivered, counts.duplicated, counts.lost) == (100, 0, 0)
    assert sorted(per_node.values()) == [100, 100, 100]


def test_a_poison_event_is_dead_lettered_and_retry_delivers_it_again(
    site: Site, workers: list[Worker]
) -> None:
    """An event failing ``max_attempts`` times is a dead letter; ``transport retry`` reruns it."""
    box = site.outbox()
    args = ["--receiver", FAILS, "--claim-idle", "0.3"]
    start_workers(site, workers, 1, *args)
    pushed = site.push(box, 4, FAILS)  # users 0..3: 1 and 3 fail

    def dead() -> int:
        shown = site.tidings(
            "transport", "--app", "tests.remote.remote_app:outbox", "dead", "--json"
        )
        assert shown.returncode == 0, shown.stderr
        return len(shown.stdout.splitlines())

    wait_for(lambda: dead() == 2, 30, "two dead letters")
    assert stop_all(workers) == [0]
    first = site.calls(FAILS)
    assert sorted(Counter(e for e, _, _ in first).values()) == [1, 1, 2, 2]
    put_back = site.tidings(
        "transport", "--app", "tests.remote.remote_app:outbox", "retry", "--all"
    )
    assert put_back.stdout.strip() == "2 dead letters put back", put_back.stderr
    start_workers(site, workers, 1, *args, TIDINGS_TEST_HEALED="1")
    wait_for(lambda: len(site.calls(FAILS)) >= len(first) + 2, 30, "the retried events")
    assert stop_all(workers[1:]) == [0]
    assert dead() == 0
    retried = site.calls(FAILS)[len(first) :]
    counts = count(pushed, [e for e, _, _ in site.calls(FAILS)])
    report("poison", counts, f"; dead 2, retried {len(retried)} (attempt 1 each)")
    assert [attempt for _, attempt, _ in retried] == [1, 1]
    assert counts.lost == 0


POOLS = pytest.mark.parametrize("pool", ["threads", "asyncio"])


@POOLS
def test_a_slow_receiver_is_not_run_twice_while_its_worker_lives(
    site: Site, workers: list[Worker], pool: str
) -> None:
    """Receivers taking four times the claim idle time are never taken over by another worker."""
    box = site.outbox()
    args = ["--receiver", WELCOME, "--claim-idle", "0.5", "--prefetch", "1", "--pool", pool]
    start_workers(site, workers, 2, *args, TIDINGS_TEST_SLEEP="2")
    pushed = site.push(box, 4, WELCOME)
    wait_for(lambda: len(site.calls(WELCOME)) >= 4, 40, "four slow calls")
    time.sleep(1.0)  # a takeover would show as a fifth start by now
    assert stop_all(workers) == [0, 0]
    counts = count(pushed, [e for e, _, _ in site.calls(WELCOME)])
    starts = Counter(e for e, _, _ in site.calls("START"))
    report(
        f"slow receiver (4x claim idle, {pool})", counts, f"; runs started {sum(starts.values())}"
    )
    assert sorted(starts.values()) == [1, 1, 1, 1]
    assert (counts.delivered, counts.duplicated) == (4, 0)


@POOLS
def test_sigterm_finishes_the_running_receiver_acknowledges_and_exits_0(
    site: Site, workers: list[Worker], pool: str
) -> None:
    """SIGTERM mid-receiver: the call completes, its entry is acknowledged, exit status 0."""
    box = site.outbox()
    args = ["--receiver", WELCOME, "--prefetch", "1", "--pool", pool]
    start_workers(site, workers, 1, *args, TIDINGS_TEST_SLEEP="1.5")
    pushed = site.push(box, 2, WELCOME)
    time.sleep(0.5)  # inside the first call
    assert stop_all(workers) == [0]
    calls = site.calls(WELCOME)
    assert box.transport is not None
    (state,) = [s for s in box.transport.status() if s.group == WELCOME]
    print(f"\nSIGTERM ({pool}): calls {len(calls)}, pending {state.pending}, unread {state.lag}")
    assert len(calls) == 1
    assert calls[0][0] in pushed
    assert (state.pending, state.lag) == (0, 1)


def test_redis_killed_and_restarted_mid_run_loses_nothing(
    tmp_path: Path, workers: list[Worker], redis_server: Callable[..., RedisServer]
) -> None:
    """A private Redis (AOF, fsync always) SIGKILLed twice mid-run: the relay backs off and
    publishes again, the worker reconnects; every committed event runs."""
    server = redis_server(aof=True)
    site = Site(tmp_path, server.url, "tidings-test")
    box = site.outbox()
    start_workers(
        site,
        workers,
        1,
        "--receiver",
        WELCOME,
        "--poll",
        "0.05",
        "--claim-idle",
        "1",
        relay=True,
    )
    pushed: list[str] = []
    for round_ in range(3):
        pushed += site.write(box, 60, WELCOME, start=round_ * 60)
        wait_for(progressed(site, 19 + round_ * 60), 60, "progress")
        if round_ < 2:
            server.kill()
            pushed += site.write(box, 20, WELCOME, start=1000 + round_ * 20)  # Redis down
            time.sleep(1.0)
            server.start()
    wait_for(lambda: set(pushed) <= {e for e, _, _ in site.calls(WELCOME)}, 90, "every event")
    assert stop_all(workers) == [0]
    counts = count(pushed, [e for e, _, _ in site.calls(WELCOME)])
    report("Redis killed twice (AOF always)", counts, f"; Redis starts {server.starts}")
    assert counts.lost == 0
    assert counts.strangers == 0
    assert box.status().pending == 0
