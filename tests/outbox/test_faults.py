"""Fault tests with real processes killed by SIGKILL: nothing is lost, duplicates are retries.

Each test prints its counts (pushed, delivered, duplicated, lost). The short versions run in
the suite (marker ``fault``: once, on the main Python); the long ones are marked ``stress``.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from tests.outbox.conftest import make_engine
from tests.outbox.processes import (
    ROOT,
    Counts,
    calls,
    count,
    environment,
    send,
    start_worker,
    tidings,
)
from tests.outbox.worker_app import welcomed
from tidings.outbox import Outbox

pytestmark = pytest.mark.fault

LEASE = "0.5"


def fresh_outbox(engine: Engine) -> Outbox:
    """The worker app's outbox on ``engine``, tables created."""
    box = Outbox(engine)
    box.create_all()
    return box


@pytest.fixture
def sqlite_box(tmp_path: Path) -> Iterator[Outbox]:
    """An outbox on a new SQLite file."""
    engine = create_engine(f"sqlite:///{tmp_path / 'faults.db'}")
    yield fresh_outbox(engine)
    engine.dispose()


def drain(box: Outbox, env: dict[str, str]) -> None:
    """Run ``--once`` workers until nothing is pending or leased (leases of the dead expire)."""
    for _ in range(100):
        status = box.status()
        if status.pending == 0 and status.in_flight == 0:
            return
        time.sleep(float(LEASE))
        done = tidings(["worker", *TARGET_ARGS, "--once", "--quiet", "--lease", LEASE], env)
        assert done.returncode == 0, done.stderr
    raise AssertionError(f"the outbox never drained: {box.status()}")


TARGET_ARGS = ["tests.outbox.worker_app:outbox"]


def report(name: str, counts: Counts, extra: str = "") -> None:
    """Print a fault test's counts."""
    print(f"\n{name}: {counts}{extra}")


def test_producer_killed_right_after_commit_loses_nothing(
    sqlite_box: Outbox, tmp_path: Path
) -> None:
    """A producer SIGKILLed right after its last COMMIT: a relay started later runs every send."""
    producer = subprocess.run(
        [sys.executable, "-m", "tests.outbox.producer", str(sqlite_box.engine.url), "40"],
        cwd=ROOT,
        env=environment(str(sqlite_box.engine.url), tmp_path / "calls.txt"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert producer.returncode == -signal.SIGKILL, producer.stderr
    pushed = producer.stdout.split()
    env = environment(str(sqlite_box.engine.url), tmp_path / "calls.txt")
    drain(sqlite_box, env)
    counts = count(pushed, calls(tmp_path / "calls.txt"))
    report("producer SIGKILL after COMMIT", counts)
    assert (counts.pushed, counts.lost, counts.duplicated, counts.strangers) == (40, 0, 0, 0)


def kill_workers(
    box: Outbox, tmp_path: Path, pushed: int, kills: int, workers: int, seed: int
) -> tuple[Counts, int]:
    """Push sends, SIGKILL ``workers`` concurrent workers ``kills`` times at random, drain.

    Returns:
        The counts, and how many times two workers ran the same event at once.
    """
    rng = random.Random(seed)
    locks = tmp_path / "locks"
    locks.mkdir()
    log = tmp_path / "calls.txt"
    env = environment(
        str(box.engine.url), log, TIDINGS_TEST_SLEEP="0.002", TIDINGS_TEST_LOCKS=str(locks)
    )
    ids = send(box, welcomed, pushed)
    for _ in range(kills):
        before = len(calls(log))
        target = before + rng.randint(1, max(2, pushed // (kills * 2)))
        running = [
            start_worker(["--quiet", "--lease", LEASE, "--poll", "0.05", "--batch-size", "10"], env)
            for _ in range(workers)
        ]
        try:
            deadline = time.monotonic() + 60
            while len(calls(log)) < target and time.monotonic() < deadline:
                if all(worker.poll() is not None for worker in running):
                    break
                time.sleep(rng.uniform(0.0, 0.02))
        finally:
            for worker in running:
                worker.send_signal(signal.SIGKILL)
                worker.communicate()
    drain(box, env)
    overlaps = sum(1 for line in log.read_text().splitlines() if " OVERLAP " in line)
    return count(ids, calls(log)), overlaps


def test_a_worker_killed_at_random_points_loses_nothing(sqlite_box: Outbox, tmp_path: Path) -> None:
    """Workers SIGKILLed at random moments: restarted ones deliver every event."""
    counts, overlaps = kill_workers(sqlite_box, tmp_path, pushed=200, kills=3, workers=1, seed=12)
    report("SQLite worker SIGKILL x3", counts, f", overlapping runs {overlaps}")
    assert (counts.lost, counts.strangers, overlaps) == (0, 0, 0)
    assert counts.delivered == 200


@pytest.mark.stress
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_workers_killed_many_times_over_thousands_of_events(kind: str, tmp_path: Path) -> None:
    """Thousands of events, workers killed 20 times (three at once on PostgreSQL): none lost,
    no event run by two workers at the same time."""
    for engine in make_engine(kind, tmp_path):
        box = fresh_outbox(engine)
        workers = 3 if kind == "postgresql" else 1
        counts, overlaps = kill_workers(box, tmp_path, 3000, 20, workers, seed=7)
        report(f"{kind} {workers} worker(s) SIGKILL x20", counts, f", overlapping runs {overlaps}")
        assert (counts.lost, counts.strangers, overlaps) == (0, 0, 0)
