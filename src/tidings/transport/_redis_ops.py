"""The Redis Streams transport's logic, once for the sync and the asyncio client.

Each operation is a generator that yields the Redis commands it needs (:class:`Call`,
:class:`Batch`, :class:`Script`) and receives their replies, so the sync transport runs it with
blocking calls and the asyncio one with ``await``; neither repeats the logic.

Keys, for a prefix ``tidings`` (``{topic}`` and ``{group}`` as given)::

    tidings:{topic}                  the topic's stream (XADD / XREADGROUP / XAUTOCLAIM)
    tidings|topics                   set of the topics that have groups (for status())
    tidings|dead|{group}|{topic}     the group's dead letters, a stream
    tidings|done|{group}|{event_id}  a dedupe mark, SET NX with the retention as PX

Internal keys use ``|`` after the prefix and topics ``:``, so no topic name collides with
them.

Only the standard library is imported here: the replies are redis-py's parsed replies (RESP2
lists or RESP3 maps, both read).
"""

from __future__ import annotations

import re
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tidings._errors import TidingsTypeError, TidingsValueError
from tidings.transport._base import (
    ConsumerStatus,
    DeadMessage,
    GroupStatus,
    Message,
    Start,
    check_name,
    check_options,
    is_entry_id,
)

__all__ = ["CLAIM", "DEAD_LETTER", "KEEP_ALIVE", "Batch", "Call", "Operations", "Script", "Step"]

# XAUTOCLAIM does not return delivery counts; reading them with XPENDING in the same script
# keeps the claim and the counts atomic. A 6.2 server lists deleted entries with nil fields
# (7.0 returns them apart): those are skipped. The scan goes on from the cursor until
# `count` entries are taken or the pending list is through.
CLAIM = """
local out = {}
local cursor = '0-0'
local want = tonumber(ARGV[4])
repeat
  local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], cursor,
                       'COUNT', want - #out)
  cursor = r[1]
  for _, e in ipairs(r[2]) do
    if e[2] then
      local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
      if p[1] then
        table.insert(out, {e[1], e[2], p[1][4]})
      end
    end
  end
until cursor == '0-0' or #out >= want
return out
"""

# XCLAIM ... JUSTID resets the idle time without counting a delivery, but it would also take
# an entry back from a consumer that claimed it meanwhile: only the owner's entries are
# refreshed, checked in the same script. With no ids the loop would touch nothing, so a
# missing group would go unnoticed: XPENDING then fails with NOGROUP, as the per-id one does.
KEEP_ALIVE = """
if #ARGV < 3 then
  redis.call('XPENDING', KEYS[1], ARGV[1])
end
local held = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    table.insert(held, ARGV[i])
  end
end
return held
"""

# A dead letter belongs to a group: XPENDING fails with NOGROUP when the group is missing
# (never created, or lost by a Redis restarted without persistence), before anything is
# written, as the in-memory transport refuses it. Then the entry is stored and acknowledged.
DEAD_LETTER = """
redis.call('XPENDING', KEYS[1], ARGV[1])
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
if ARGV[2] ~= '' then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
end
return id
"""


@dataclass(frozen=True, slots=True)
class Call:
    """One client method call; ``ignore`` is a reply error text that means "fine"."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    ignore: str | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """Calls sent in one pipeline, in a MULTI/EXEC transaction when ``transaction``."""

    calls: tuple[Call, ...]
    transaction: bool = False


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script (``CLAIM`` or ``KEEP_ALIVE``) run with its keys and arguments."""

    source: str
    keys: tuple[str, ...]
    args: tuple[Any, ...]


Step = Call | Batch | Script
Op = Generator[Step, Any, Any]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(raw: Any) -> dict[str, Any]:
    """Entry fields as a str-keyed dict, from a dict or a flat [k, v, k, v] list."""
    if isinstance(raw, Mapping):
        return {_text(k): v for k, v in raw.items()}
    items = list(raw or ())
    return {_text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def _body(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


class Operations:
    """The transport's operations as command generators, for one key prefix and options.

    Args:
        prefix: The key prefix.
        maxlen: Entries a topic keeps (``XADD MAXLEN``).
        approximate: ``MAXLEN ~`` (trim whole nodes, cheap) rather than exactly.
        dedupe_ttl: Seconds a dedupe mark is kept.
    """

    def __init__(self, prefix: str, maxlen: int, approximate: bool, dedupe_ttl: float) -> None:
        check_name("key prefix", prefix)
        if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1:
            raise TidingsValueError(f"maxlen must be an int of at least 1, not {maxlen!r}")
        if isinstance(dedupe_ttl, bool) or not isinstance(dedupe_ttl, (int, float)):
            raise TidingsValueError(f"dedupe_ttl must be a number of seconds, not {dedupe_ttl!r}")
        if not dedupe_ttl >= 0.001:
            raise TidingsValueError(f"dedupe_ttl must be at least 0.001 s, not {dedupe_ttl!r}")
        self.prefix = prefix
        self.maxlen = maxlen
        self.approximate = approximate
        self.dedupe_ttl = dedupe_ttl

    # -- keys -------------------------------------------------------------------------------

    def stream(self, topic: str) -> str:
        """The stream key of a topic."""
        return f"{self.prefix}:{check_name('topic', topic)}"

    def dead(self, topic: str, group: str) -> str:
        """The dead-letter stream key of a group on a topic."""
        return f"{self.prefix}|dead|{check_name('group', group)}|{check_name('topic', topic)}"

    def mark(self, group: str, event_id: str) -> str:
        """The dedupe key of an event in a group."""
        return f"{self.prefix}|done|{check_name('group', group)}|{check_name('event id', event_id)}"

    @property
    def registry(self) -> str:
        """The key of the set of topics that have groups."""
        return f"{self.prefix}|topics"

    def patterns(self) -> tuple[str, str]:
        """SCAN patterns of every key of this prefix (to remove them all)."""
        escaped = re.sub(r"([*?\[\]\\])", r"\\\1", self.prefix)
        return f"{escaped}:*", f"{escaped}|*"

    # -- operations -------------------------------------------------------------------------

    def _xadd(self, topic: str, event_id: str, body: bytes) -> Call:
        key = self.stream(topic)
        check_name("event id", event_id)
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TidingsTypeError(f"a transport body must be bytes, not {type(body).__name__}")
        return Call(
            "xadd",
            (key, {"event_id": event_id, "body": bytes(body)}),
            {"maxlen": self.maxlen, "approximate": self.approximate},
        )

    def publish(self, topic: str, event_id: str, body: bytes) -> Op:
        """XADD with MAXLEN; returns the entry id."""
        entry_id = yield self._xadd(topic, event_id, body)
        return _text(entry_id)

    def ensure_group(self, topic: str, group: str, start: Start) -> Op:
        """XGROUP CREATE ... MKSTREAM, an existing group (BUSYGROUP) left alone."""
        key = self.stream(topic)
        check_name("group", group)
        if start not in ("first", "new"):
            raise TidingsValueError(f"start must be 'first' or 'new', not {start!r}")
        yield Call("sadd", (self.registry, topic))
        yield Call(
            "xgroup_create",
            (key, group),
            {"id": "0" if start == "first" else "$", "mkstream": True},
            ignore="BUSYGROUP",
        )

    def consume(
        self,
        topic: str,
        group: str,
        consumer: str,
        count: int,
        block: float,
        max_block: float | None = None,
    ) -> Op:
        """XREADGROUP ... STREAMS topic >, blocking at most ``max_block`` seconds."""
        key = self.stream(topic)
        check_name("group", group)
        check_name("consumer", consumer)
        check_options(count=count, block=block)
        if max_block is not None:
            block = min(block, max_block)
        reply = yield Call(
            "xreadgroup",
            (group, consumer, {key: ">"}),
            {"count": count, "block": max(1, round(block * 1000)) if block > 0 else None},
        )
        if not reply:
            return []
        streams = reply.items() if isinstance(reply, Mapping) else reply
        messages: list[Message] = []
        for _, entries in streams:
            # RESP3 nests the entries one list deeper: [[(id, fields), ...]].
            if (
                entries
                and isinstance(entries[0], list)
                and entries[0]
                and isinstance(entries[0][0], (list, tuple))
            ):
                entries = entries[0]
            for entry_id, raw in entries:
                messages.append(self._message(topic, entry_id, raw, 1))
        return messages

    def _message(self, topic: str, entry_id: Any, raw: Any, deliveries: int) -> Message:
        fields = _fields(raw)
        return Message(
            _text(entry_id),
            topic,
            _text(fields.get("event_id", b"")),
            _body(fields.get("body", b"")),
            int(deliveries),
        )

    def claim(self, topic: str, group: str, consumer: str, min_idle: float, count: int) -> Op:
        """XAUTOCLAIM from the start of the pending list, with the delivery counts."""
        key = self.stream(topic)
        check_name("group", group)
        check_name("consumer", consumer)
        check_options(count=count, min_idle=min_idle)
        reply = yield Script(CLAIM, (key,), (group, consumer, round(min_idle * 1000), count))
        return [self._message(topic, e[0], e[1], e[2]) for e in reply or ()]

    def keep_alive(self, topic: str, group: str, consumer: str, ids: Sequence[str]) -> Op:
        """XCLAIM JUSTID of the entries the consumer still holds."""
        key = self.stream(topic)
        check_name("group", group)
        check_name("consumer", consumer)
        wanted = [i for i in ids if is_entry_id(i)]
        # Run even with nothing to refresh: the script checks the group (NoSuchGroupError).
        reply = yield Script(KEEP_ALIVE, (key,), (group, consumer, *wanted))
        return [_text(i) for i in reply or ()]

    def ack(self, topic: str, group: str, ids: Sequence[str]) -> Op:
        """XACK; returns how many were pending."""
        key = self.stream(topic)
        check_name("group", group)
        wanted = [i for i in ids if is_entry_id(i)]
        if not wanted:
            return 0
        return int((yield Call("xack", (key, group, *wanted))))

    def done(self, group: str, event_id: str) -> Op:
        """EXISTS of the dedupe mark."""
        return bool((yield Call("exists", (self.mark(group, event_id),))))

    def mark_done(self, group: str, event_id: str) -> Op:
        """SET NX PX: True when the mark is new."""
        reply = yield Call(
            "set",
            (self.mark(group, event_id), b"1"),
            {"nx": True, "px": max(1, round(self.dedupe_ttl * 1000))},
        )
        return bool(reply)

    def done_events(self, group: str, event_ids: Sequence[str]) -> Op:
        """EXISTS of each mark, in one pipeline."""
        wanted = list(dict.fromkeys(event_ids))
        if not wanted:
            return set()
        replies = yield Batch(tuple(Call("exists", (self.mark(group, e),)) for e in wanted))
        return {e for e, found in zip(wanted, replies, strict=True) if found}

    def complete(self, topic: str, group: str, messages: Sequence[Message]) -> Op:
        """SET NX PX of each mark and one XACK, in one MULTI; returns the XACK count."""
        key = self.stream(topic)
        ttl = max(1, round(self.dedupe_ttl * 1000))
        calls = [
            Call("set", (self.mark(group, m.event_id), b"1"), {"nx": True, "px": ttl})
            for m in messages
        ]
        ids = [m.id for m in messages if is_entry_id(m.id)]
        if ids:
            calls.append(Call("xack", (key, check_name("group", group), *ids)))
        if not calls:
            return 0
        replies = yield Batch(tuple(calls), transaction=True)
        return int(replies[-1]) if ids else 0

    def dead_letter(self, topic: str, group: str, message: Message, reason: str) -> Op:
        """XADD to the dead letters and XACK, in one script checking the group; the dead id."""
        check_name("group", group)
        fields = {
            "message_id": message.id,
            "event_id": message.event_id,
            "body": message.body,
            "deliveries": str(message.deliveries),
            "reason": str(reason),
            "dead_at": repr(time.time()),
        }
        pending = message.id if is_entry_id(message.id) else ""
        flat = [value for pair in fields.items() for value in pair]
        reply = yield Script(
            DEAD_LETTER, (self.stream(topic), self.dead(topic, group)), (group, pending, *flat)
        )
        return _text(reply)

    def _dead(self, topic: str, group: str, entry_id: Any, raw: Any) -> DeadMessage:
        fields = _fields(raw)
        return DeadMessage(
            _text(entry_id),
            topic,
            group,
            _text(fields.get("message_id", b"")),
            _text(fields.get("event_id", b"")),
            _body(fields.get("body", b"")),
            int(fields.get("deliveries", 0)),
            _text(fields.get("reason", b"")),
            float(fields.get("dead_at", 0.0)),
        )

    def dead_letters(self, topic: str, group: str, count: int | None) -> Op:
        """XRANGE of the dead letters."""
        check_options(count=count)
        reply = yield Call("xrange", (self.dead(topic, group),), {"count": count})
        return [self._dead(topic, group, entry_id, raw) for entry_id, raw in reply or ()]

    def retry(self, topic: str, group: str, ids: Sequence[str] | None) -> Op:
        """XADD each chosen dead letter onto the topic and XDEL it, one transaction each."""
        dead_key = self.dead(topic, group)
        if ids is None:
            found = yield Call("xrange", (dead_key,))
        else:
            wanted = [i for i in ids if is_entry_id(i)]
            replies = yield Batch(tuple(Call("xrange", (dead_key, i, i)) for i in wanted))
            found = [entry for reply in replies for entry in reply or ()]
        retried = 0
        for entry_id, raw in found or ():
            dead = self._dead(topic, group, entry_id, raw)
            _, removed = yield Batch(
                (self._xadd(topic, dead.event_id, dead.body), Call("xdel", (dead_key, dead.id))),
                transaction=True,
            )
            retried += int(removed)
        return retried

    def remove_group(self, topic: str, group: str) -> Op:
        """XGROUP DESTROY (a missing stream is no group) and DEL of the dead letters."""
        key = self.stream(topic)
        dead = self.dead(topic, group)
        destroyed = yield Call(
            "xgroup_destroy", (key, group), ignore="XGROUP subcommand requires the key"
        )
        yield Call("delete", (dead,))
        return bool(destroyed)

    def status(self, topics: Sequence[str] | None) -> Op:
        """XLEN, XINFO GROUPS and CONSUMERS, and the dead letters' XLEN, per topic."""
        if topics is None:
            names = sorted(_text(t) for t in (yield Call("smembers", (self.registry,))) or ())
        else:
            names = [check_name("topic", t) for t in topics]
        report: list[GroupStatus] = []
        for topic in names:
            key = self.stream(topic)
            exists, length = yield Batch((Call("exists", (key,)), Call("xlen", (key,))))
            if not exists:
                continue
            groups = yield Call("xinfo_groups", (key,))
            for info in sorted(groups, key=lambda g: _text(g["name"])):
                group = _text(info["name"])
                consumers, dead = yield Batch(
                    (
                        Call("xinfo_consumers", (key, group)),
                        Call("xlen", (self.dead(topic, group),)),
                    )
                )
                # Redis 7.0 counts entries trimmed before the group read them in its lag; they
                # can no longer be delivered, and once any are, every kept entry is unread.
                lag = info.get("lag")
                lag = None if lag is None else min(int(lag), int(length))
                report.append(
                    GroupStatus(
                        topic,
                        group,
                        int(length),
                        int(info["pending"]),
                        None if lag is None else int(lag),
                        tuple(
                            ConsumerStatus(_text(c["name"]), int(c["pending"]), c["idle"] / 1000)
                            for c in sorted(consumers, key=lambda c: _text(c["name"]))
                        ),
                        int(dead),
                    )
                )
        return report
