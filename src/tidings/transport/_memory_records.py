"""The records an :class:`~tidings.transport.memory.InMemoryTransport` keeps, and entry ids.

A topic is a list of entry ids in order with the entries by id, and its groups; a group has
the last id it handed out, its pending entries (consumer, deliveries, since when), its
consumers (last seen) and its dead letters. Entry ids are ``(milliseconds, sequence)`` as Redis
makes them, written ``ms-seq``. All of it is guarded by the transport's lock.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from tidings._errors import TidingsTypeError
from tidings.transport._base import DeadMessage

__all__ = [
    "TRIM_STEP",
    "Entry",
    "EntryId",
    "Group",
    "Ids",
    "Pending",
    "Topic",
    "check_body",
    "format_id",
    "parse_id",
    "wake",
]

# Redis keeps a stream in nodes of 100 entries (stream-node-max-entries) and MAXLEN ~ drops
# whole nodes only, so a stream runs up to about this far over its maxlen.
TRIM_STEP = 100

EntryId = tuple[int, int]


def parse_id(entry_id: str) -> EntryId:
    """``"ms-seq"`` (or ``"ms"``) as ``(ms, seq)``; the caller checked it is an entry id."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def format_id(entry_id: EntryId) -> str:
    """``(ms, seq)`` as ``"ms-seq"``."""
    return f"{entry_id[0]}-{entry_id[1]}"


@dataclass(slots=True)
class Entry:
    """One published entry."""

    id: EntryId
    event_id: str
    body: bytes


@dataclass(slots=True)
class Pending:
    """An entry handed out and not acknowledged: to whom, how many times, since when."""

    consumer: str
    deliveries: int
    since: float


@dataclass(slots=True)
class Group:
    """A consumer group: its read position, pending list, consumers and dead letters."""

    last: EntryId
    pending: dict[EntryId, Pending] = field(default_factory=dict)
    consumers: dict[str, float] = field(default_factory=dict)
    dead: list[DeadMessage] = field(default_factory=list)


@dataclass(slots=True)
class Topic:
    """A topic: its entries in order, and its groups."""

    ids: list[EntryId] = field(default_factory=list)
    entries: dict[EntryId, Entry] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)


class Ids:
    """Entry ids as Redis makes them: milliseconds, then a sequence within the millisecond."""

    def __init__(self) -> None:
        self._last: EntryId = (0, 0)

    def next(self) -> EntryId:
        """A new id, greater than every id this generator made."""
        ms = int(time.time() * 1000)
        self._last = (ms, 0) if ms > self._last[0] else (self._last[0], self._last[1] + 1)
        return self._last


def wake(future: asyncio.Future[None]) -> None:
    """Resolve the future of a task waiting for a publish (in the task's loop)."""
    if not future.done():
        future.set_result(None)


def check_body(body: object) -> bytes:
    """The body as bytes.

    Raises:
        TidingsTypeError: It is not bytes-like.
    """
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TidingsTypeError(f"a transport body must be bytes, not {type(body).__name__}")
    return bytes(body)
