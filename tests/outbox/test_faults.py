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
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session

from tests.outbox.conftest import make_engine
from tests.outbox.processes import (
    ROOT,
    Counts,
    calls,
    count,
    environment,
    repeated_attempts,
    send,
    start_worker,
    tidings,
)
from tests.outbox.worker_app import refused, welcomed
from tidings.outbox import Outbox, PayloadTypeError

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


def drain(
    box: Outbox, env: dict[str, str], lease: str = LEASE, runs: int = 100, claim: str = "lease"
) -> int:
    """Run ``--once`` workers until nothing is pending or leased (leases of the dead expire).

    Returns:
        How many of the workers were killed (by a kill point of ``env``).
    """
    killed = 0
    for _ in range(runs):
        status = box.status()
        if status.pending == 0 and status.in_flight == 0:
            return killed
        time.sleep(float(lease))
        done = tidings(
            [
                "worker",
                *TARGET_ARGS,
                *("--once", "--quiet", "--lease", lease, "--batch-size", "10", "--claim", claim),
            ],
            env,
        )
        if done.returncode == -signal.SIGKILL:
            killed += 1
            continue
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
    box: Outbox,
    tmp_path: Path,
    pushed: int,
    kills: int,
    workers: int,
    seed: int,
    lease: str = LEASE,
    claim: str = "lease",
    **extra: str,
) -> tuple[Counts, int]:
    """Push sends, SIGKILL ``workers`` concurrent workers ``kills`` times at random, drain.

    Returns:
        The counts, and how many times two workers ran the same event at once.
    """
    rng = random.Random(seed)
    locks = tmp_path / "locks"
    locks.mkdir()
    log = tmp_path / "calls.txt"
    url = box.engine.url.render_as_string(hide_password=False)
    env = environment(url, log, TIDINGS_TEST_SLEEP="0.002", TIDINGS_TEST_LOCKS=str(locks), **extra)
    ids = send(box, welcomed, pushed)
    for _ in range(kills):
        before = len(calls(log))
        target = before + rng.randint(1, max(2, pushed // (kills * 2)))
        running = [
            start_worker(
                [
                    *("--quiet", "--lease", lease, "--poll", "0.05", "--batch-size", "10"),
                    *("--claim", claim),
                ],
                env,
            )
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
    drain(box, env, lease, claim=claim)
    overlaps = sum(1 for line in log.read_text().splitlines() if " OVERLAP " in line)
    return count(ids, calls(log)), overlaps


def test_a_worker_killed_at_random_points_loses_nothing(sqlite_box: Outbox, tmp_path: Path) -> None:
    """Workers SIGKILLed at random moments: restarted ones deliver every event."""
    counts, overlaps = kill_workers(sqlite_box, tmp_path, pushed=200, kills=3, workers=1, seed=12)
    report("SQLite worker SIGKILL x3", counts, f", overlapping runs {overlaps}")
    assert (counts.lost, counts.strangers, overlaps) == (0, 0, 0)
    assert counts.delivered == 200


@pytest.mark.postgres
@pytest.mark.parametrize("claim", ["lease", "lock"])
def test_three_postgres_workers_killed_at_random_never_share_an_event(
    tmp_path: Path, claim: str
) -> None:
    """Three PostgreSQL workers at once, SIGKILLed together three times: every event delivered,
    none run by two workers at the same time (leases long enough not to expire mid-call)."""
    for engine in make_engine("postgresql", tmp_path):
        box = fresh_outbox(engine)
        counts, overlaps = kill_workers(box, tmp_path, 400, 3, 3, seed=5, lease="3", claim=claim)
        report(f"PostgreSQL 3 workers SIGKILL x3, claim={claim}", counts, f", overlaps {overlaps}")
        assert (counts.lost, counts.strangers, overlaps) == (0, 0, 0)
        assert counts.delivered == 400


@pytest.mark.parametrize(("point", "most"), [("claim", "6"), ("inside", "40"), ("after", "40")])
def test_workers_killing_themselves_at_each_point_lose_nothing(
    sqlite_box: Outbox, tmp_path: Path, point: str, most: str
) -> None:
    """Workers SIGKILLed while claiming, inside a receiver, or after it returned and before its
    completion was recorded: restarted ones deliver every event; a repeat is a later attempt."""
    log = tmp_path / "calls.txt"
    pushed = send(sqlite_box, welcomed, 100)
    env = environment(str(sqlite_box.engine.url), log, TIDINGS_TEST_KILL_AT=f"{point}:{most}")
    killed = drain(sqlite_box, env, runs=300)
    counts = count(pushed, calls(log))
    report(f"SQLite worker SIGKILL at {point}", counts, f", workers killed {killed}")
    assert killed > 0
    assert (counts.pushed, counts.delivered, counts.lost, counts.strangers) == (100, 100, 0, 0)
    assert repeated_attempts(log) == 0  # each repeat is a new attempt of the same event


def test_rollbacks_and_rolled_back_savepoints_store_nothing(
    sqlite_box: Outbox, tmp_path: Path
) -> None:
    """Of 60 sends, those in rolled-back transactions or savepoints never reach a worker."""
    committed: list[str] = []
    pending = sqlite_box.tables.pending
    with sqlite_box.installed(), Session(sqlite_box.engine) as session:
        for n in range(60):
            with session.begin():
                if n % 3 == 1:
                    savepoint = session.begin_nested()
                    welcomed.send(None, user_id=n)
                    savepoint.rollback()
                else:
                    welcomed.send(None, user_id=n)
                if n % 3 == 2:
                    session.rollback()
                    continue
                last = session.scalar(select(pending.c.event_id).order_by(pending.c.id.desc()))
                if n % 3 == 0:
                    committed.append(str(last))
    env = environment(str(sqlite_box.engine.url), tmp_path / "calls.txt")
    drain(sqlite_box, env)
    seen = calls(tmp_path / "calls.txt")
    counts = count(committed, seen)
    report("rollbacks and savepoint rollbacks", counts)
    assert (counts.pushed, counts.delivered, counts.lost, counts.duplicated) == (20, 20, 0, 0)
    assert counts.strangers == 0


def test_an_always_failing_receiver_goes_dead_the_others_complete_and_retry_revives_it(
    sqlite_box: Outbox, tmp_path: Path
) -> None:
    """``accounts.always_fails`` ends in the dead letters after its 2 attempts while the other
    receiver of each send completes; ``tidings outbox retry --all`` runs it twice again."""
    log = tmp_path / "calls.txt"
    ok = send(sqlite_box, refused, 25)
    failing = send_ids(sqlite_box, "accounts.always_fails")
    env = environment(str(sqlite_box.engine.url), log, TIDINGS_OUTBOX=TARGET_ARGS[0])
    drain(sqlite_box, env)
    done = count(ok, calls(log))
    tries = count(failing, calls(log, "accounts.always_fails"))
    dead = sqlite_box.dead_letters()
    report("always failing receiver", tries, f"; its sibling: {done}; dead letters {len(dead)}")
    assert (done.delivered, done.duplicated, done.lost) == (25, 0, 0)
    assert (tries.delivered, tries.duplicated, len(dead)) == (25, 25, 25)
    assert {letter.error for letter in dead} == {"RuntimeError: the mail server said no"}
    retried = tidings(["outbox", "retry", "--all"], env)
    assert retried.stdout == "25 dead letters put back\n", retried.stderr
    drain(sqlite_box, env)
    again = count(failing, calls(log, "accounts.always_fails"))
    report("after retry --all", again)
    assert (again.delivered, again.duplicated, len(sqlite_box.dead_letters())) == (25, 75, 25)


def send_ids(box: Outbox, receiver: str) -> list[str]:
    """The event ids of ``receiver``'s pending deliveries, oldest first."""
    pending = box.tables.pending
    with box.engine.connect() as conn:
        query = select(pending.c.event_id).where(pending.c.receiver == receiver)
        return [str(event_id) for event_id in conn.scalars(query.order_by(pending.c.id))]


def test_an_unstorable_payload_fails_the_senders_transaction(
    sqlite_box: Outbox, tmp_path: Path
) -> None:
    """Every third send carries an object: its transaction fails with the TypeError, nothing of
    it is stored; the others are delivered."""
    failed = 0
    pending = sqlite_box.tables.pending
    good: list[str] = []
    with sqlite_box.installed(), Session(sqlite_box.engine) as session:
        for n in range(30):
            try:
                with session.begin():
                    welcomed.send(None, user_id=n, extra=object() if n % 3 == 0 else n)
                    last = session.scalar(select(pending.c.event_id).order_by(pending.c.id.desc()))
            except PayloadTypeError:
                failed += 1
            else:
                good.append(str(last))
    drain(sqlite_box, environment(str(sqlite_box.engine.url), tmp_path / "calls.txt"))
    counts = count(good, calls(tmp_path / "calls.txt"))
    report("unstorable payloads", counts, f", sends refused {failed}")
    assert (failed, counts.pushed, counts.delivered, counts.lost, counts.strangers) == (
        10,
        20,
        20,
        0,
        0,
    )


@pytest.mark.stress
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_workers_killed_many_times_over_thousands_of_events(kind: str, tmp_path: Path) -> None:
    """Thousands of events, workers killed 20 times from outside and at random points from
    inside (three at once on PostgreSQL): none lost, no event run by two workers at once."""
    for engine in make_engine(kind, tmp_path):
        box = fresh_outbox(engine)
        workers = 3 if kind == "postgresql" else 1
        counts, overlaps = kill_workers(
            box,
            tmp_path,
            3000,
            20,
            workers,
            seed=7,
            lease="3",
            TIDINGS_TEST_KILL_AT="claim:200,inside:2000,after:2000",
        )
        report(f"{kind} {workers} worker(s) SIGKILL x20", counts, f", overlapping runs {overlaps}")
        assert (counts.lost, counts.strangers, overlaps) == (0, 0, 0)
