"""Queue and broadcast delivery: stream and group names, the entry's envelope, the publish.

A ``delivery="queue"`` or ``"broadcast"`` send stores its outbox rows exactly as a durable one
does; the relay then *publishes* such a row instead of running its receiver: one entry on the
receiver's topic, named after the receiver's stable name (on Redis the stream
``{prefix}:{receiver}``, the prefix being the transport's), carrying the event id and an
envelope (the payload format, the signal and receiver names, the send time and the stored
arguments, unchanged). The row is marked done only after ``publish()`` returned; a transport
error leaves it in place and the relay backs off.

Consumers read the stream through consumer groups: ``{receiver}`` for a queue receiver (the
pool of its workers shares the group: each entry goes to one of them), ``{receiver}@{node}``
for a broadcast receiver (each node has a group of its own: each reads every entry).
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tidings._delivery import Delivery
from tidings._errors import TidingsTypeError, TidingsValueError

if TYPE_CHECKING:
    from tidings.transport._base import Transport

__all__ = [
    "Envelope",
    "check_node",
    "default_node",
    "group_name",
    "open_envelope",
    "open_transport",
    "seal",
    "topic_name",
]

#: The envelope's own format (the payload inside has its ``format`` too).
ENVELOPE_VERSION = 1

REMOTE_MODES = (Delivery.QUEUE, Delivery.BROADCAST)


def default_node() -> str:
    """This process's node name when none is configured: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def topic_name(receiver: str) -> str:
    """The topic of a receiver's entries: its stable name (the transport adds its prefix)."""
    return receiver


def topic_of_group(group: str) -> str:
    """The topic a group reads: the receiver's name, before any ``@node``."""
    return topic_name(group.partition("@")[0])


def group_name(mode: Delivery, receiver: str, node: str) -> str:
    """The consumer group a worker reads a receiver's stream through.

    Args:
        mode: ``Delivery.QUEUE`` (one group for every worker) or ``Delivery.BROADCAST`` (one
            group per node).
        receiver: The receiver's stable name.
        node: This worker's node name (used by broadcast only).

    Raises:
        ValueError: ``mode`` is neither queue nor broadcast.
    """
    if mode is Delivery.QUEUE:
        return receiver
    if mode is Delivery.BROADCAST:
        return f"{receiver}@{node}"
    raise TidingsValueError(f"receiver {receiver!r}: delivery {mode.value!r} has no group")


def check_node(node: str) -> str:
    """Return ``node`` if it can be part of a group name.

    Raises:
        ValueError: It is empty or holds whitespace.
    """
    if not isinstance(node, str) or not node or any(ch.isspace() for ch in node):
        raise TidingsValueError(f"node name {node!r}: expected a non-empty string without spaces")
    return node


_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def open_transport(value: Transport | str | None) -> Transport | None:
    """The transport an outbox was configured with.

    Args:
        value: A transport; a Redis URL (``redis://``, ``rediss://``, ``unix://``); ``"redis"``
            for the one ``TIDINGS_REDIS_URL`` names (default ``redis://127.0.0.1:6379/0``);
            ``"memory://"`` for an :class:`~tidings.transport.InMemoryTransport` of this
            process; or None.

    Raises:
        TypeError: ``value`` is none of these.
        ValueError: A string names no transport.
    """
    if value is None:
        return None
    from tidings.transport._base import Transport

    if isinstance(value, str):
        if value == "memory://":
            from tidings.transport.memory import InMemoryTransport

            return InMemoryTransport()
        if value == "redis" or value.startswith(_REDIS_SCHEMES):
            from tidings.transport.redis import RedisTransport

            return RedisTransport(None if value == "redis" else value)
        raise TidingsValueError(
            f"transport {value!r}: expected a Redis URL (redis://, rediss://, unix://), 'redis' "
            "(TIDINGS_REDIS_URL) or 'memory://'"
        )
    if isinstance(value, Transport):
        return value
    raise TidingsTypeError(
        f"transport={value!r} is neither a tidings.transport.Transport nor a URL string"
    )


@dataclass(frozen=True, slots=True)
class Envelope:
    """What a stream entry carries besides the event id: the outbox row, as stored.

    Attributes:
        format: The payload's format version (the outbox's ``FORMAT_VERSION`` when written).
        signal: The signal's stable name.
        receiver: The receiver's stable name.
        sent_at: When the send happened (aware, UTC).
        payload: The stored arguments (JSON text, read by the outbox codec).
    """

    format: int
    signal: str
    receiver: str
    sent_at: datetime.datetime
    payload: str


def seal(
    format: int, signal: str, receiver: str, sent_at: datetime.datetime, payload: str
) -> bytes:
    """The body of a stream entry for one outbox row (``sent_at`` naive UTC or aware)."""
    if sent_at.tzinfo is None:
        sent_at = sent_at.replace(tzinfo=datetime.timezone.utc)
    data = {
        "v": ENVELOPE_VERSION,
        "format": format,
        "signal": signal,
        "receiver": receiver,
        "sent_at": sent_at.isoformat(),
        "payload": payload,
    }
    return json.dumps(data, separators=(",", ":")).encode()


def open_envelope(body: bytes) -> Envelope:
    """Read a stream entry's body.

    Raises:
        ValueError: It is not an envelope this release can read.
    """
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TidingsValueError(f"the entry is not a tidings envelope: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("v"), int):
        raise TidingsValueError("the entry is not a tidings envelope")
    if data["v"] > ENVELOPE_VERSION:
        raise TidingsValueError(
            f"the entry's envelope is version {data['v']}; this release reads versions up to "
            f"{ENVELOPE_VERSION}"
        )
    try:
        sent_at = datetime.datetime.fromisoformat(data["sent_at"])
        if sent_at.tzinfo is None:
            sent_at = sent_at.replace(tzinfo=datetime.timezone.utc)
        return Envelope(
            format=int(data["format"]),
            signal=str(data["signal"]),
            receiver=str(data["receiver"]),
            sent_at=sent_at,
            payload=str(data["payload"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise TidingsValueError(f"the entry's envelope is incomplete: {exc!r}") from exc


def event_uuid(event_id: str) -> uuid.UUID:
    """The event id of a stream entry as a UUID.

    Raises:
        ValueError: It is not a UUID.
    """
    try:
        return uuid.UUID(event_id)
    except (ValueError, AttributeError, TypeError) as exc:
        raise TidingsValueError(f"the entry's event id {event_id!r} is not a UUID") from exc
