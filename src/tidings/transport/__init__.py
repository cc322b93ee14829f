"""Transports: the brokers that carry queue and broadcast deliveries between processes.

:class:`Transport` (threads) and :class:`AsyncTransport` (asyncio) are the interface; the
implementations are :class:`~tidings.transport.memory.InMemoryTransport` (this process only:
the embedded default and the test double) and ``tidings.transport.redis`` (Redis Streams,
``pip install "tidings[redis]"``). Another broker is another module implementing the same
protocol; see docs/transport.md.

Importing this package imports only the standard library.
"""

from __future__ import annotations

from tidings.transport._base import (
    DEFAULT_DEDUPE_TTL,
    DEFAULT_MAXLEN,
    AsyncTransport,
    ConsumerStatus,
    DeadMessage,
    GroupStatus,
    Message,
    NoSuchGroupError,
    Start,
    Transport,
    TransportError,
)
from tidings.transport.memory import AsyncInMemoryTransport, InMemoryTransport

__all__ = [
    "DEFAULT_DEDUPE_TTL",
    "DEFAULT_MAXLEN",
    "AsyncInMemoryTransport",
    "AsyncTransport",
    "ConsumerStatus",
    "DeadMessage",
    "GroupStatus",
    "InMemoryTransport",
    "Message",
    "NoSuchGroupError",
    "Start",
    "Transport",
    "TransportError",
]
