"""The application the queue and broadcast process tests run: ``tests.remote.remote_app:outbox``.

Environment:

``TIDINGS_TEST_OUTBOX_URL``
    The outbox database (default: an in-memory SQLite database).
``TIDINGS_TEST_REDIS_URL``
    The Redis the transport uses; ``memory://`` (the default) shares one in-memory transport
    within the process.
``TIDINGS_TEST_PREFIX``
    The transport's key prefix (tests use a fresh one each).
``TIDINGS_TEST_CALLS``
    A file every receiver call appends ``event-id receiver attempt pid`` to.
``TIDINGS_TEST_SLEEP``
    Seconds each ``send_welcome`` call takes; it records a ``START`` line when it begins, so
    two runs of one event show as two ``START`` lines.
"""

from __future__ import annotations

import os
import time
from typing import Any

from sqlalchemy import create_engine

from tidings import Signal
from tidings.outbox import Event, Outbox
from tidings.transport import InMemoryTransport, Transport

joined = Signal(name="accounts.joined")
_memory = InMemoryTransport()


def record(event: Event, what: str | None = None) -> None:
    """Append ``event-id receiver attempt pid`` to the calls file in one write."""
    path = os.environ.get("TIDINGS_TEST_CALLS")
    if path:
        line = f"{event.id} {what or event.receiver} {event.attempt} {os.getpid()}\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def send_welcome(sender: Any, user_id: int, event: Event, **kwargs: Any) -> None:
    """The queue receiver: record the call, taking ``TIDINGS_TEST_SLEEP`` seconds."""
    delay = float(os.environ.get("TIDINGS_TEST_SLEEP", "0"))
    if delay:
        record(event, "START")
        time.sleep(delay)
    record(event)


def refresh_cache(sender: Any, user_id: int, event: Event, **kwargs: Any) -> None:
    """The broadcast receiver: record the call."""
    record(event)


def always_fails(sender: Any, user_id: int, event: Event, **kwargs: Any) -> None:
    """A queue receiver that records the call, then fails (unless the user id is even)."""
    record(event)
    if user_id % 2 == 1 and not os.environ.get("TIDINGS_TEST_HEALED"):
        raise RuntimeError(f"cannot welcome user {user_id}")


joined.connect(send_welcome, delivery="queue", name="accounts.send_welcome", max_attempts=3)
joined.connect(refresh_cache, delivery="broadcast", name="accounts.refresh_cache")
joined.connect(always_fails, delivery="queue", name="accounts.always_fails", max_attempts=2)


def transport() -> Transport:
    """The transport ``TIDINGS_TEST_REDIS_URL`` names (a new client for a Redis URL)."""
    url = os.environ.get("TIDINGS_TEST_REDIS_URL", "memory://")
    if url == "memory://":
        return _memory
    from tidings.transport.redis import RedisTransport

    return RedisTransport(url, prefix=os.environ.get("TIDINGS_TEST_PREFIX", "tidings-test"))


def outbox() -> Outbox:
    """The outbox on ``TIDINGS_TEST_OUTBOX_URL`` with the transport, read when called."""
    url = os.environ.get("TIDINGS_TEST_OUTBOX_URL", "sqlite://")
    return Outbox(create_engine(url), transport=transport())
