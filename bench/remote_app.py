"""The application of the remote benchmark's worker processes: ``bench.remote_app:outbox``.

``BENCH_DB_URL`` names the database, ``BENCH_REDIS_URL`` and ``BENCH_PREFIX`` the Redis and the
key prefix, ``BENCH_OUT`` the file the receiver notes each call's latency in.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import create_engine

from bench.remote import note
from tidings import Signal
from tidings.outbox import Event, Outbox

happened = Signal(name="bench.happened")


def trivial(sender: Any, n: int, sent: float, event: Event, **kwargs: Any) -> None:
    """The receiver: note how long since the commit."""
    note(os.environ["BENCH_OUT"], n, sent)


happened.connect(trivial, delivery="queue", name="bench.trivial")


def outbox() -> Outbox:
    """The benchmark's outbox, on the database and Redis the environment names."""
    from tidings.transport.redis import RedisTransport

    return Outbox(
        create_engine(os.environ["BENCH_DB_URL"]),
        transport=RedisTransport(os.environ["BENCH_REDIS_URL"], prefix=os.environ["BENCH_PREFIX"]),
    )
