"""The remote demo's application: sign-ups, a welcome mail (queue) and a cache refresh (broadcast).

``REMOTE_DB`` names the SQLite file, ``REMOTE_TRANSPORT`` the transport (``memory://`` or a
Redis URL; ``REMOTE_PREFIX`` the Redis key prefix). Every receiver call appends
``worker receiver user-id`` to the file named by ``REMOTE_LOG``. A worker process runs it with
``tidings worker app:outbox --no-relay`` from this folder.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from sqlalchemy import create_engine

from tidings import Signal, receiver
from tidings.outbox import Event, Outbox

user_signed_up = Signal(name="demo.user_signed_up")


def worker_name() -> str:
    """Who runs this call: the worker process's name, or the consumer thread's."""
    return os.environ.get("REMOTE_WORKER") or threading.current_thread().name.split(":")[0]


def log(what: str, user_id: int) -> None:
    """Append one line to the log, in one write."""
    line = f"{worker_name()} {what} {user_id}\n".encode()
    fd = os.open(os.environ["REMOTE_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@receiver(user_signed_up, delivery="queue", name="demo.send_welcome_mail")
def send_welcome_mail(sender: Any, user_id: int, event: Event, **kwargs: Any) -> None:
    """Send the welcome mail: one worker of the pool does it (a slow mail server)."""
    time.sleep(0.05)
    log("mail", user_id)


@receiver(user_signed_up, delivery="broadcast", name="demo.refresh_user_count")
def refresh_user_count(sender: Any, user_id: int, event: Event, **kwargs: Any) -> None:
    """Forget this node's cached user count: every node does it."""
    log("cache", user_id)


def make_transport() -> Any:
    """The transport ``REMOTE_TRANSPORT`` names."""
    url = os.environ.get("REMOTE_TRANSPORT", "memory://")
    if url == "memory://":
        return url
    from tidings.transport.redis import RedisTransport

    return RedisTransport(url, prefix=os.environ.get("REMOTE_PREFIX", "tidings-demo"))


outbox = Outbox(
    create_engine(f"sqlite:///{os.environ.get('REMOTE_DB', 'remote.db')}"),
    transport=make_transport(),
    node=os.environ.get("REMOTE_WORKER"),
)
