"""Durable delivery through a transactional outbox, on the application's own database.

A durable send stores one delivery per durable receiver in the outbox tables, in the sender's
transaction; a relay (a worker thread, task or process) claims the committed deliveries and
runs the receivers, at least once, with retries and dead letters. SQLite (one relay per
database file) and PostgreSQL (any number of workers, ``FOR UPDATE SKIP LOCKED``) are supported.

Needs ``pip install "tidings[outbox]"``. See docs/durable.md.
"""

from __future__ import annotations

try:
    import sqlalchemy  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise ImportError('tidings.outbox needs SQLAlchemy: pip install "tidings[outbox]"') from exc

from tidings.outbox._codec import PayloadTypeError
from tidings.outbox._outbox import Outbox
from tidings.outbox._receivers import DurableReceiver, Event, receiver_name
from tidings.outbox._relay import Relay, RelayBusyError, RelayStats
from tidings.outbox._schema import FORMAT_VERSION, OutboxTables
from tidings.outbox._store import DeadLetter, OutboxStatus

__all__ = [
    "FORMAT_VERSION",
    "DeadLetter",
    "DurableReceiver",
    "Event",
    "Outbox",
    "OutboxStatus",
    "OutboxTables",
    "PayloadTypeError",
    "Relay",
    "RelayBusyError",
    "RelayStats",
    "receiver_name",
]
