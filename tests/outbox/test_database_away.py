"""The database goes away under a running worker: it backs off, logs, resumes, loses nothing.

A private PostgreSQL cluster (``initdb`` in a temporary directory, a free port) is stopped by
its PID while a worker process runs, and started again. The shared server is never touched. The
SQLite variant (a file made read-only) cannot be staged where the tests run as root, who
writes read-only files anyway; the relay's handling is the same code for both.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from tests.outbox.private_pg import private_postgres
from tests.outbox.processes import calls, count, environment, send, start_worker
from tests.outbox.worker_app import welcomed
from tidings.outbox import Outbox

pytestmark = pytest.mark.fault


def wait_for(predicate: object, timeout: float, what: str) -> None:
    """Poll ``predicate()`` every 50 ms until it is true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_worker_survives_the_database_going_away(tmp_path: Path) -> None:
    """PostgreSQL stopped mid-run for two seconds: the worker logs, backs off, resumes when the
    server is back and delivers every event."""
    with private_postgres() as server:
        engine = create_engine(server.url, pool_pre_ping=True)
        box = Outbox(engine)
        box.create_all()
        pushed = send(box, welcomed, 300)
        log = tmp_path / "calls.txt"
        env = environment(server.url, log, TIDINGS_TEST_SLEEP="0.005")
        worker = start_worker(["--lease", "2", "--poll", "0.05", "--batch-size", "10"], env)
        try:
            wait_for(lambda: len(calls(log)) >= 60, 60, "the first deliveries")
            server.stop()
            stopped_at = len(calls(log))
            time.sleep(2)
            assert worker.poll() is None, "the worker died with the database"
            during = len(calls(log)) - stopped_at
            server.start()
            wait_for(lambda: set(pushed) <= set(calls(log)), 60, "every event after the restart")
            worker.send_signal(signal.SIGTERM)
            _, stderr = worker.communicate(timeout=60)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
        counts = count(pushed, calls(log))
        print(
            f"\ndatabase away for 2 s: {counts}; calls while it was away {during} (the batch in "
            f"hand), worker exit status {worker.returncode}"
        )
        assert worker.returncode == 0, stderr
        assert "cannot claim" in stderr or "cannot record" in stderr
        assert (counts.pushed, counts.delivered, counts.lost, counts.strangers) == (300, 300, 0, 0)
        status = box.status()
        assert (status.pending, status.in_flight, status.dead) == (0, 0, 0)
        engine.dispose()
