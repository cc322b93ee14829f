"""Running ``tidings`` in real processes for the tests, and reading what the receivers did."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from tidings import Signal
from tidings.outbox import Outbox

ROOT = Path(__file__).resolve().parents[2]
TARGET = "tests.outbox.worker_app:outbox"


def environment(url: str, calls: Path, **extra: str) -> dict[str, str]:
    """The environment of a worker process of ``worker_app`` on ``url``."""
    env = dict(os.environ)
    env.update(
        TIDINGS_TEST_OUTBOX_URL=url,
        TIDINGS_TEST_CALLS=str(calls),
        PYTHONPATH=str(ROOT),
        **extra,
    )
    return env


def send(
    box: Outbox, signal: Signal, count: int, receiver: str = "accounts.send_welcome"
) -> list[str]:
    """Send ``signal`` ``count`` times in one Session transaction; return ``receiver``'s new
    event ids, in send order.

    ``user_id`` is the send's number; ``box`` is installed for the sends.
    """
    pending = box.tables.pending
    with box.installed(), Session(box.engine) as session, session.begin():
        newest = session.scalar(select(pending.c.id).order_by(pending.c.id.desc()).limit(1)) or 0
        for n in range(count):
            signal.send(None, user_id=n)
        ids = session.scalars(
            select(pending.c.event_id)
            .where(pending.c.id > newest, pending.c.receiver == receiver)
            .order_by(pending.c.id)
        )
        return [str(event_id) for event_id in ids]


def tidings(
    args: list[str], env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m tidings ARGS`` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "tidings", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_worker(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """Start ``python -m tidings worker TARGET ARGS`` in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "tidings", "worker", TARGET, *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def calls(path: Path, receiver: str = "accounts.send_welcome") -> list[str]:
    """The event ids of the calls of ``receiver`` recorded in ``path``, in call order."""
    if not path.exists():
        return []
    lines = [line.split() for line in path.read_text().splitlines()]
    return [parts[0] for parts in lines if len(parts) == 3 and parts[1] == receiver]


def repeated_attempts(path: Path, receiver: str = "accounts.send_welcome") -> int:
    """How many calls of ``receiver`` repeated an (event id, attempt) already seen.

    Every run follows a committed claim, which counts an attempt: a duplicate that is a true
    retry carries a higher attempt number. Anything else is a double delivery.
    """
    if not path.exists():
        return 0
    lines = [line.split() for line in path.read_text().splitlines()]
    seen = [(parts[0], parts[2]) for parts in lines if len(parts) == 3 and parts[1] == receiver]
    return len(seen) - len(set(seen))


@dataclass(frozen=True)
class Counts:
    """What a fault test pushed and what the receivers saw."""

    pushed: int
    delivered: int
    duplicated: int
    lost: int
    strangers: int

    def __str__(self) -> str:
        return (
            f"pushed {self.pushed}, delivered {self.delivered}, duplicated {self.duplicated}, "
            f"lost {self.lost}, unknown ids {self.strangers}"
        )


def count(pushed: list[str], seen: list[str]) -> Counts:
    """Compare the pushed event ids with the ids the receiver was called with."""
    times = Counter(seen)
    wanted = set(pushed)
    delivered = len(wanted & set(times))
    return Counts(
        pushed=len(pushed),
        delivered=delivered,
        duplicated=sum(n - 1 for n in times.values()),
        lost=len(wanted) - delivered,
        strangers=len(set(times) - wanted),
    )
