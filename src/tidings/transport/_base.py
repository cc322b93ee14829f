"""The transport interface: what queue and broadcast delivery need from a message broker.

A *topic* is an append-only log of entries (a Redis stream). Each entry carries the outbox
event id and an opaque body. Readers form *groups*: every group sees every entry of its topic
once, and within a group each entry goes to one *consumer* at a time. So a work queue is one
group with many consumers, and a broadcast is one group per node.

Semantics every implementation keeps (the contract tests in tests/transport/ run them all):

* ``publish()`` returns only once the broker accepted the entry; it raises
  :class:`~tidings.transport.TransportError` otherwise, and the caller publishes again later. A
  re-published entry is a second entry with the same ``event_id``.
* A group starts at the ``"first"`` entry still kept or at ``"new"`` entries only; creating an
  existing group changes nothing.
* ``consume()`` hands out entries the group has not seen yet and records them as *pending* for
  the consumer, with a delivery count of 1. An entry stays pending until ``ack()``.
* ``claim()`` takes pending entries that nobody touched for ``min_idle`` seconds, whichever
  consumer held them (the caller's own included), and counts one more delivery each.
  ``keep_alive()`` resets the idle time of entries the consumer still holds, without counting
  a delivery, so a long receiver keeps its claim.
* Deduplication is by ``(group, event_id)``: ``mark_done()`` remembers for the transport's
  retention time that the event ran in the group, ``done()`` asks (``done_events()`` for a
  batch); ``complete()`` marks and acknowledges in one step.
* ``dead_letter()`` stores a copy of the entry with the reason in the group's dead letters and
  acknowledges it; ``retry()`` puts dead letters back onto the topic as new entries (every
  group of the topic sees them; groups that already ran the event skip it by ``done()``).
* Topics keep at most about ``maxlen`` entries (older ones are trimmed even if a group has not
  read them yet: a lagging group misses them; see docs/transport.md).

Names (topics, groups, consumers) are non-empty strings without whitespace. Only the standard
library is imported here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from tidings._errors import NoSuchGroupError, TidingsTypeError, TidingsValueError, TransportError

__all__ = [
    "DEFAULT_DEDUPE_TTL",
    "DEFAULT_MAXLEN",
    "AsyncTransport",
    "ConsumerStatus",
    "DeadMessage",
    "GroupStatus",
    "Message",
    "NoSuchGroupError",
    "Start",
    "Transport",
    "TransportError",
    "check_name",
    "check_options",
    "is_entry_id",
]

#: Default retention of the ``(group, event_id)`` dedupe marks: 7 days, in seconds.
DEFAULT_DEDUPE_TTL = 7 * 24 * 3600.0
#: Default number of entries a topic keeps (approximately, on Redis).
DEFAULT_MAXLEN = 100_000

Start = Literal["first", "new"]

_NAME = re.compile(r"^\S+$")
_ENTRY_ID = re.compile(r"^\d+-\d+$")


@dataclass(frozen=True, slots=True)
class Message:
    """One entry of a topic as handed to one consumer of one group.

    Attributes:
        id: The transport's id of the entry (a Redis stream entry id such as ``"1700-0"``).
        topic: The topic it was read from.
        event_id: The outbox event id published with it: the deduplication key.
        body: The published bytes, unchanged (the outbox payload envelope).
        deliveries: How many times this group was handed the entry, 1 the first time.
    """

    id: str
    topic: str
    event_id: str
    body: bytes
    deliveries: int


@dataclass(frozen=True, slots=True)
class DeadMessage:
    """An entry a group gave up on, kept in that group's dead letters.

    Attributes:
        id: Its id among the group's dead letters (what ``retry(ids=...)`` takes).
        topic: The topic the entry came from.
        group: The group that gave up on it.
        message_id: The entry's id on the topic when it died.
        event_id: The outbox event id.
        body: The published bytes.
        deliveries: How many times the group had been handed it.
        reason: Why it was given up (the receiver's error, "max attempts", ...).
        dead_at: When, as seconds since the epoch.
    """

    id: str
    topic: str
    group: str
    message_id: str
    event_id: str
    body: bytes
    deliveries: int
    reason: str
    dead_at: float


@dataclass(frozen=True, slots=True)
class ConsumerStatus:
    """One consumer of a group.

    Attributes:
        name: The consumer's name (``host:pid[:n]``).
        pending: Entries it holds, handed out and not acknowledged.
        idle: Seconds since it last read or claimed (as the broker counts).
    """

    name: str
    pending: int
    idle: float


@dataclass(frozen=True, slots=True)
class GroupStatus:
    """The state of one group on one topic, for ``tidings transport status``.

    Attributes:
        topic: The topic.
        group: The group.
        length: Entries the topic keeps now (all groups share them).
        pending: Entries handed to the group's consumers and not acknowledged.
        lag: Entries of the topic the group has not been handed yet, or ``None`` when the
            broker cannot tell. Redis 7.0 counts entries added minus entries read: once
            entries the group never read were trimmed, it reports that many more (never more
            than ``length``).
        consumers: The group's consumers.
        dead: Entries in the group's dead letters.
    """

    topic: str
    group: str
    length: int
    pending: int
    lag: int | None
    consumers: tuple[ConsumerStatus, ...]
    dead: int


@runtime_checkable
class Transport(Protocol):
    """A broker seen from threads: every method blocks until the broker answered.

    Every method raises :class:`~tidings.transport.TransportError` when the broker cannot be
    reached or refuses the operation. ``consume``, ``claim``, ``keep_alive`` and
    ``dead_letter`` on a group never created (or lost by the broker) raise
    :class:`~tidings.transport.NoSuchGroupError`, ``dead_letter`` before storing anything: a
    dead letter belongs to its group, which would never list it. ``ack``, ``dead_letters`` and
    ``retry`` of such a group find nothing.
    """

    def publish(self, topic: str, event_id: str, body: bytes) -> str:
        """Append an entry; return its id once the broker accepted it."""
        ...

    def ensure_group(self, topic: str, group: str, *, start: Start = "first") -> None:
        """Create the group (and the topic) unless it exists; an existing one is left alone."""
        ...

    def consume(
        self, topic: str, group: str, consumer: str, *, count: int = 10, block: float = 1.0
    ) -> list[Message]:
        """Hand out up to ``count`` entries the group has not seen, waiting up to ``block`` s."""
        ...

    def claim(
        self, topic: str, group: str, consumer: str, *, min_idle: float, count: int = 10
    ) -> list[Message]:
        """Take over up to ``count`` pending entries idle for at least ``min_idle`` seconds."""
        ...

    def keep_alive(self, topic: str, group: str, consumer: str, ids: Sequence[str]) -> list[str]:
        """Reset the idle time of the entries the consumer holds; return those it still holds."""
        ...

    def ack(self, topic: str, group: str, ids: Sequence[str]) -> int:
        """Acknowledge entries (they leave the pending list); return how many were pending."""
        ...

    def done(self, group: str, event_id: str) -> bool:
        """Whether the event was marked done in the group (within the retention time)."""
        ...

    def mark_done(self, group: str, event_id: str) -> bool:
        """Mark the event done in the group; return False if it already was."""
        ...

    def done_events(self, group: str, event_ids: Sequence[str]) -> set[str]:
        """Those of the events that are marked done in the group (one round trip)."""
        ...

    def complete(self, topic: str, group: str, messages: Sequence[Message]) -> int:
        """Mark the messages' events done in the group and acknowledge them, at once.

        One round trip (on Redis a ``MULTI``): the mark and the acknowledgement are made
        together or not at all. Returns how many of the messages were pending.
        """
        ...

    def dead_letter(self, topic: str, group: str, message: Message, reason: str) -> str:
        """Store the entry in the group's dead letters and acknowledge it; return its dead id.

        Raises NoSuchGroupError, storing nothing, when the group does not exist.
        """
        ...

    def dead_letters(
        self, topic: str, group: str, *, count: int | None = None
    ) -> list[DeadMessage]:
        """The group's dead letters, oldest first (at most ``count``)."""
        ...

    def retry(self, topic: str, group: str, ids: Sequence[str] | None = None) -> int:
        """Publish dead letters (all, or those ids) onto the topic again; return how many."""
        ...

    def remove_group(self, topic: str, group: str) -> bool:
        """Delete the group, its pending entries and its dead letters; False if it was not there.

        For the group of a broadcast node that is gone for good: its entries stay in the topic
        for the other groups.
        """
        ...

    def status(self, topics: Sequence[str] | None = None) -> list[GroupStatus]:
        """The state of every group of the topics (all topics with a group when ``None``)."""
        ...

    def close(self) -> None:
        """Release connections; the transport is not used afterwards."""
        ...


@runtime_checkable
class AsyncTransport(Protocol):
    """The same broker seen from asyncio: :class:`Transport`'s methods, awaited."""

    async def publish(self, topic: str, event_id: str, body: bytes) -> str:
        """See :meth:`Transport.publish`."""
        ...

    async def ensure_group(self, topic: str, group: str, *, start: Start = "first") -> None:
        """See :meth:`Transport.ensure_group`."""
        ...

    async def consume(
        self, topic: str, group: str, consumer: str, *, count: int = 10, block: float = 1.0
    ) -> list[Message]:
        """See :meth:`Transport.consume`."""
        ...

    async def claim(
        self, topic: str, group: str, consumer: str, *, min_idle: float, count: int = 10
    ) -> list[Message]:
        """See :meth:`Transport.claim`."""
        ...

    async def keep_alive(
        self, topic: str, group: str, consumer: str, ids: Sequence[str]
    ) -> list[str]:
        """See :meth:`Transport.keep_alive`."""
        ...

    async def ack(self, topic: str, group: str, ids: Sequence[str]) -> int:
        """See :meth:`Transport.ack`."""
        ...

    async def done(self, group: str, event_id: str) -> bool:
        """See :meth:`Transport.done`."""
        ...

    async def mark_done(self, group: str, event_id: str) -> bool:
        """See :meth:`Transport.mark_done`."""
        ...

    async def done_events(self, group: str, event_ids: Sequence[str]) -> set[str]:
        """See :meth:`Transport.done_events`."""
        ...

    async def complete(self, topic: str, group: str, messages: Sequence[Message]) -> int:
        """See :meth:`Transport.complete`."""
        ...

    async def dead_letter(self, topic: str, group: str, message: Message, reason: str) -> str:
        """See :meth:`Transport.dead_letter`."""
        ...

    async def dead_letters(
        self, topic: str, group: str, *, count: int | None = None
    ) -> list[DeadMessage]:
        """See :meth:`Transport.dead_letters`."""
        ...

    async def retry(self, topic: str, group: str, ids: Sequence[str] | None = None) -> int:
        """See :meth:`Transport.retry`."""
        ...

    async def remove_group(self, topic: str, group: str) -> bool:
        """See :meth:`Transport.remove_group`."""
        ...

    async def status(self, topics: Sequence[str] | None = None) -> list[GroupStatus]:
        """See :meth:`Transport.status`."""
        ...

    async def close(self) -> None:
        """See :meth:`Transport.close`."""
        ...


def check_name(kind: str, value: object) -> str:
    """Return ``value`` if it is a valid topic, group or consumer name.

    Args:
        kind: What the value names, for the message (``"topic"``, ``"group"``, ...).
        value: The value given.

    Returns:
        The value.

    Raises:
        TidingsTypeError: It is not a string.
        TidingsValueError: It is empty or holds whitespace.
    """
    if not isinstance(value, str):
        raise TidingsTypeError(f"a transport {kind} must be a str, not {value!r}")
    if not _NAME.match(value):
        raise TidingsValueError(f"a transport {kind} must be non-empty, without spaces: {value!r}")
    return value


def check_options(
    *, count: int | None = None, block: float | None = None, min_idle: float | None = None
) -> None:
    """Reject a count below 1 or a negative number of seconds, naming the value.

    Args:
        count: A ``count=`` argument, or None when the call has none.
        block: A ``block=`` argument (seconds).
        min_idle: A ``min_idle=`` argument (seconds).

    Raises:
        TidingsValueError: A value is out of range or not a number.
    """
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise TidingsValueError(f"count must be an int of at least 1, not {count!r}")
    for name, seconds in (("block", block), ("min_idle", min_idle)):
        if seconds is None:
            continue
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
            raise TidingsValueError(f"{name} must be a number of seconds >= 0, not {seconds!r}")


def is_entry_id(value: object) -> bool:
    """Whether ``value`` is an entry id of the ``ms-seq`` form (others are never pending)."""
    return isinstance(value, str) and _ENTRY_ID.match(value) is not None
