"""Producers of ``delivery="queue"`` sends SIGKILLed at random moments: every committed send
runs, on a worker process, once; nothing rolled back runs.

The producer (``tests.remote.producer``) commits one send per transaction with a business row
naming its event id; a worker process (relay and consumer) runs on a private redis-server all
along. Each test prints its counts (pushed = committed, delivered, duplicated, lost).
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.outbox.processes import count
from tests.remote.conftest import ROOT, Site, Worker, start_workers, stop_all, wait_for
from tests.remote.producer import WELCOME, signups
from tests.remote.test_faults import report
from tests.transport.servers import RedisServer

pytestmark = [pytest.mark.fault, pytest.mark.redis]

#: User ids one producer may use (far more than it commits before its kill).
SPAN = 100_000


def printed(path: Path) -> list[int]:
    """The user ids a producer printed (each one just before its transaction began)."""
    if not path.exists():
        return []
    return [int(line) for line in path.read_text().splitlines() if line.strip().isdigit()]


def began(path: Path, count: int) -> Callable[[], bool]:
    """A check that the producer writing ``path`` began ``count`` transactions."""
    return lambda: len(printed(path)) >= count


def kill_producers(site: Site, kills: int, seed: int) -> list[int]:
    """Start a producer ``kills`` times and SIGKILL it at a random moment after its first
    commit; return the last user id each one began."""
    rng = random.Random(seed)
    last = []
    for kill in range(kills):
        out = site.folder / f"producer-{kill}.out"
        with open(out, "w") as stdout, open(out.with_suffix(".err"), "w") as stderr:
            producer = subprocess.Popen(
                [sys.executable, "-m", "tests.remote.producer", str(kill * SPAN)],
                env=site.env(),
                cwd=ROOT,
                stdout=stdout,
                stderr=stderr,
                text=True,
            )
        try:
            wait_for(began(out, 2), 60, f"producer {kill}'s first commit")
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            producer.send_signal(signal.SIGKILL)
            producer.wait(10)
        errors = out.with_suffix(".err").read_text()
        assert producer.returncode == -signal.SIGKILL, errors
        last.append(printed(out)[-1])
    return last


def run_producer_kills(
    tmp_path: Path,
    workers: list[Worker],
    redis_server: Callable[..., RedisServer],
    kills: int,
) -> None:
    """``kills`` producers SIGKILLed while a worker relays and consumes; then it drains."""
    site = Site(tmp_path, redis_server().url, "tidings-test")
    box = site.outbox()
    signups.create(box.engine)
    start_workers(site, workers, 1, "--receiver", WELCOME, "--poll", "0.05", relay=True)
    last = kill_producers(site, kills, seed=kills)
    with box.engine.connect() as conn:
        rows = conn.execute(select(signups.c.user_id, signups.c.event_id)).all()
    committed = [event_id for _, event_id in rows]
    wait_for(lambda: set(committed) <= {e for e, _, _ in site.calls(WELCOME)}, 60, "every send")
    wait_for(lambda: box.status().pending == 0, 30, "an empty outbox")
    time.sleep(0.5)  # a second run of an event would show by now
    assert stop_all(workers) == [0]
    counts = count(committed, [e for e, _, _ in site.calls(WELCOME)])
    inside = len(set(last) - {user_id for user_id, _ in rows})
    report(
        f"queue, {kills} producers SIGKILLed",
        counts,
        f"; kills inside a transaction (its send rolled back) {inside}",
    )
    assert counts.pushed == len(rows) >= kills
    assert (counts.lost, counts.duplicated, counts.strangers) == (0, 0, 0)


def test_producers_killed_at_random_moments_lose_no_committed_send(
    tmp_path: Path, workers: list[Worker], redis_server: Callable[..., RedisServer]
) -> None:
    """Ten producers SIGKILLed at random moments: each committed send runs once, no other."""
    run_producer_kills(tmp_path, workers, redis_server, kills=10)


@pytest.mark.stress
def test_producers_killed_many_times_stress(
    tmp_path: Path, workers: list[Worker], redis_server: Callable[..., RedisServer]
) -> None:
    """The same with 100 kills."""
    run_producer_kills(tmp_path, workers, redis_server, kills=100)
