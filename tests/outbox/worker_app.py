"""An application the worker-process tests run: ``tidings worker tests.outbox.worker_app:outbox``.

``outbox`` builds the outbox on the database ``TIDINGS_TEST_OUTBOX_URL`` names; every receiver
call appends ``event-id receiver attempt`` to the file named by ``TIDINGS_TEST_CALLS``;
``TIDINGS_TEST_SLEEP`` makes each call take that many seconds. ``TIDINGS_TEST_KILL_AT`` (e.g.
``inside:40,after:40,claim:6``) makes the worker SIGKILL itself at the k-th time it passes a
point, k drawn at random from 1..N by each process: ``inside`` a receiver before it did its
work, ``after`` it did it (before the relay recorded the completion), right after a ``claim``
statement ran (before its commit, which would also record the previous batch's outcome).

The receivers are connected with ``delivery="durable"``: ``welcomed`` has one,
``accounts.send_welcome``; ``refused`` has the same one and ``accounts.always_fails``.
"""

from __future__ import annotations

import os
import random
import signal
import time
from typing import Any

from sqlalchemy import create_engine, event

from tidings import Signal
from tidings.outbox import Event, Outbox

welcomed = Signal(name="accounts.welcomed")
refused = Signal(name="accounts.refused")


def record(event: Event, what: str | None = None) -> None:
    """Append the call to the calls file, in one write (whole lines even when killed)."""
    path = os.environ.get("TIDINGS_TEST_CALLS")
    if path:
        line = f"{event.id} {what or event.receiver} {event.attempt}\n".encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and has not exited.

    A SIGKILLed worker is a zombie until the test reaps it, and with ``claim="lock"`` its rows
    are free as soon as it exited (the server sees its connection close): another worker may
    take one of its events in that moment, which is no overlap. Where ``/proc`` tells, an
    exited process (state Z or X) is not alive.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # "pid (command) state ...": the state follows the last parenthesis.
            state = stat.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def claim_run(event: Event) -> str | None:
    """Mark ``event`` as running in this process; return the lock path (None if not asked).

    A lock left by a process that is still alive means two workers run the event at once:
    that is recorded as an ``OVERLAP`` line. A dead process's lock is stale and replaced.
    """
    folder = os.environ.get("TIDINGS_TEST_LOCKS")
    if not folder:
        return None
    path = os.path.join(folder, str(event.id))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        with open(path) as held:
            owner = held.read().strip()
        if owner and alive(int(owner)) and int(owner) != os.getpid():
            record(event, "OVERLAP")
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, str(os.getpid()).encode())
    finally:
        os.close(fd)
    return path


def _kill_points() -> dict[str, int]:
    spec = os.environ.get("TIDINGS_TEST_KILL_AT", "")
    points = (item.partition(":") for item in spec.split(",") if item)
    return {where: random.randint(1, int(most)) for where, _, most in points}


KILL_AT = _kill_points()  # point -> passes left before this process kills itself


def maybe_die(point: str) -> None:
    """SIGKILL this process at the pass of ``point`` TIDINGS_TEST_KILL_AT drew for it."""
    left = KILL_AT.get(point)
    if left is None:
        return
    KILL_AT[point] = left - 1
    if left <= 1:
        os.kill(os.getpid(), signal.SIGKILL)


def send_welcome(sender: Any, user_id: int, event: Event, **kwargs: Any) -> None:
    """Record the call, taking TIDINGS_TEST_SLEEP seconds."""
    lock = claim_run(event)
    delay = float(os.environ.get("TIDINGS_TEST_SLEEP", "0"))
    if delay:
        time.sleep(delay)
    maybe_die("inside")
    record(event)
    maybe_die("after")
    if lock is not None:
        os.unlink(lock)


def always_fails(sender: Any, event: Event, **kwargs: Any) -> None:
    """Record the call, then fail."""
    record(event)
    raise RuntimeError("the mail server said no")


welcomed.connect(send_welcome, delivery="durable", name="accounts.send_welcome")
refused.connect(send_welcome, delivery="durable", name="accounts.send_welcome")
refused.connect(
    always_fails,
    delivery="durable",
    name="accounts.always_fails",
    max_attempts=2,
    backoff=0.0,
    backoff_max=0.0,
)


def _after_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
    if statement.lstrip().upper().startswith("UPDATE") and "locked_by=" in statement:
        maybe_die("claim")


def outbox() -> Outbox:
    """The outbox on ``TIDINGS_TEST_OUTBOX_URL``, read when called."""
    engine = create_engine(os.environ.get("TIDINGS_TEST_OUTBOX_URL", "sqlite://"))
    if "claim" in KILL_AT:
        event.listen(engine, "after_cursor_execute", _after_execute)
    return Outbox(engine)
