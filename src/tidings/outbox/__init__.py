"""Durable delivery through a transactional outbox, on the application's own database.

A durable send stores one delivery per durable receiver in the outbox tables, in the sender's
transaction; a relay (a worker thread, task or process) claims the committed deliveries and
runs the receivers, at least once, with retries and dead letters. SQLite (one relay per
database file) and PostgreSQL (any number of workers, ``FOR UPDATE SKIP LOCKED``) are supported.

``connect(receiver, delivery="durable")`` (importing this package registers the mode) stores a
delivery per send once an outbox is installed (``Outbox(engine).install()``); ``Outbox.write``
stores one explicitly.

Needs ``pip install "tidings[outbox]"``. See docs/durable.md.
"""

from __future__ import annotations

try:
    import sqlalchemy  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise ImportError('tidings.outbox needs SQLAlchemy: pip install "tidings[outbox]"') from exc

from tidings._delivery import Delivery as _Delivery
from tidings._delivery import register_handler as _register_handler
from tidings._errors import NoStableNameError, OutboxNotInstalledError
from tidings.outbox._codec import PayloadTypeError
from tidings.outbox._consumer import Consumer, ConsumerStats
from tidings.outbox._consumer_async import AsyncConsumer
from tidings.outbox._handler import OutboxHandler, writing_on
from tidings.outbox._handler import listen as _listen
from tidings.outbox._operations import DeadLetter, OutboxStatus
from tidings.outbox._outbox import Outbox, installed_outbox
from tidings.outbox._publish import register_handlers as _register_handlers
from tidings.outbox._receivers import DurableReceiver, Event, receiver_name
from tidings.outbox._records import Claimed, Postpone
from tidings.outbox._relay import Relay, RelayBusyError, RelayStats
from tidings.outbox._schema import FORMAT_VERSION, OutboxTables

__all__ = [
    "FORMAT_VERSION",
    "AsyncConsumer",
    "Claimed",
    "Consumer",
    "ConsumerStats",
    "DeadLetter",
    "DurableReceiver",
    "Event",
    "NoStableNameError",
    "Outbox",
    "OutboxHandler",
    "OutboxNotInstalledError",
    "OutboxStatus",
    "OutboxTables",
    "PayloadTypeError",
    "Postpone",
    "Relay",
    "RelayBusyError",
    "RelayStats",
    "installed_outbox",
    "receiver_name",
    "writing_on",
]

# Importing tidings.outbox makes delivery="durable" connectable.
_register_handler(_Delivery.DURABLE, OutboxHandler(_Delivery.DURABLE))
# ... and delivery="queue" and "broadcast" (their sends need an outbox with a transport).
_register_handlers()
_listen()
