"""Worker processes of ``tests.remote.remote_app`` on a real Redis, and what they ran."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from tests.transport.conftest import REDIS_URL, redis_or_skip, redis_server, unique_prefix
from tidings.outbox import Outbox, Relay, writing_on

ROOT = Path(__file__).resolve().parents[2]
__all__ = ["redis_server"]  # the transport tests' fixture of private redis-servers
TARGET = "tests.remote.remote_app:outbox"


@dataclass
class Worker:
    """A worker process and the file its output goes to."""

    process: subprocess.Popen[str]
    log: Path

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def ready(self) -> bool:
        """Whether it created its groups and started consuming (its first line says so)."""
        return "tidings worker: consuming" in self.log.read_text(errors="replace")

    def running(self) -> bool:
        """Whether the process is still alive."""
        return self.process.poll() is None


@dataclass
class Site:
    """One test's world: an outbox database, a Redis key prefix, the calls file."""

    folder: Path
    redis_url: str
    prefix: str

    @property
    def calls_file(self) -> Path:
        """Where the receivers record their calls."""
        return self.folder / "calls.txt"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a process of the app."""
        env = dict(os.environ)
        env.update(
            TIDINGS_TEST_OUTBOX_URL=f"sqlite:///{self.folder / 'app.db'}",
            TIDINGS_TEST_REDIS_URL=self.redis_url,
            TIDINGS_TEST_PREFIX=self.prefix,
            TIDINGS_TEST_CALLS=str(self.calls_file),
            PYTHONPATH=str(ROOT),
            **extra,
        )
        return env

    def outbox(self) -> Outbox:
        """The app's outbox as this test's processes see it (tables created)."""
        from tests.remote import remote_app
        from tidings.transport.redis import RedisTransport

        box = Outbox(
            create_engine(f"sqlite:///{self.folder / 'app.db'}"),
            transport=RedisTransport(self.redis_url, prefix=self.prefix),
        )
        box.create_all()
        assert remote_app.joined.name  # the receivers are connected in this process too
        return box

    def write(self, box: Outbox, count: int, receiver: str, start: int = 0) -> list[str]:
        """Send ``joined`` for ``count`` users (rows only); return ``receiver``'s event ids."""
        from tests.remote import remote_app

        with box.engine.connect() as conn:
            before = {row.id for row in conn.execute(box.tables.pending.select())}
        with box.installed(), box.engine.begin() as conn, writing_on(conn):
            for n in range(start, start + count):
                remote_app.joined.send(None, user_id=n)
            rows = conn.execute(box.tables.pending.select()).mappings().all()
        return sorted(
            str(row["event_id"])
            for row in rows
            if row["receiver"] == receiver and row["id"] not in before
        )

    def push(self, box: Outbox, count: int, receiver: str, start: int = 0) -> list[str]:
        """Send ``joined`` for ``count`` users, relay the rows; return ``receiver``'s event ids."""
        from tests.remote import remote_app

        with box.installed(), box.engine.begin() as conn, writing_on(conn):
            for n in range(start, start + count):
                remote_app.joined.send(None, user_id=n)
        with box.engine.connect() as conn:
            rows = conn.execute(box.tables.pending.select()).mappings().all()
        ids = sorted({str(row["event_id"]) for row in rows if row["receiver"] == receiver})
        Relay(box, durable=False).run(once=True)
        assert box.status().pending == 0
        return ids

    def calls(self, receiver: str) -> list[tuple[str, int, int]]:
        """``(event id, attempt, pid)`` of every recorded call of ``receiver``, in order."""
        if not self.calls_file.exists():
            return []
        found = []
        for line in self.calls_file.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[1] == receiver:
                found.append((parts[0], int(parts[2]), int(parts[3])))
        return found

    def worker(self, *args: str, relay: bool = False, **env: str) -> Worker:
        """Start ``tidings worker TARGET --no-relay ARGS`` (``relay``: with its relay)."""
        path = self.folder / f"worker-{time.monotonic_ns()}.log"
        with open(path, "w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "tidings", "worker", TARGET, *args]
                + ([] if relay else ["--no-relay"]),
                env=self.env(**env),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        return Worker(process, path)

    def tidings(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run ``python -m tidings ARGS`` to its end."""
        return subprocess.run(
            [sys.executable, "-m", "tidings", *args],
            env=self.env(**env),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """A world on the shared Redis under a key prefix of its own, removed afterwards."""
    redis_or_skip()
    from tidings.transport.redis import RedisTransport

    world = Site(tmp_path, REDIS_URL, unique_prefix())
    yield world
    cleaner = RedisTransport(REDIS_URL, prefix=world.prefix)
    cleaner.delete_all()
    cleaner.close()


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    """Worker processes a test starts; any still running at the end is killed."""
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.running():
            worker.process.send_signal(signal.SIGKILL)
            worker.process.wait(10)


def start_workers(
    site: Site, workers: list[Worker], count: int, *args: str, relay: bool = False, **env: str
) -> None:
    """Start ``count`` workers and wait until each one is consuming."""
    new = [site.worker(*args, relay=relay, **env) for _ in range(count)]
    workers.extend(new)
    wait_for(lambda: all(w.ready() for w in new), 60, f"{count} workers consuming")
    time.sleep(0.3)  # their first read is on its way


def stop_all(workers: list[Worker]) -> list[int | None]:
    """SIGTERM the running workers and return every exit status."""
    for worker in workers:
        if worker.running():
            worker.process.send_signal(signal.SIGTERM)
    return [worker.process.wait(30) for worker in workers]


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
