"""An in-memory transport: the embedded default, and the test double of a Redis broker.

:class:`InMemoryTransport` keeps topics, groups, pending entries, dedupe marks and dead
letters in the process, behind one lock, with the semantics of Redis Streams that
:mod:`tidings.transport` promises (see :mod:`tidings.transport._base`): entry ids ``ms-seq``,
groups starting at the first or new entries, a pending list per group with delivery counts and
idle times, claims of idle entries whatever consumer held them, approximate ``MAXLEN``
trimming in steps of 100 entries (as Redis trims whole nodes).

It is thread-safe: any number of threads may publish and consume; ``consume(block=...)``
waits on a condition that ``publish()`` notifies. :class:`AsyncInMemoryTransport` is the
asyncio face of the same state (``InMemoryTransport().as_async()``): its methods never block the
event loop, and a publish from any thread wakes the tasks waiting in ``consume()``.

The records it keeps (topics, groups, pending entries, entry ids) are in
:mod:`tidings.transport._memory_records`, the asyncio face's methods in
:mod:`tidings.transport._memory_async`.

Nothing survives the process: it carries events between threads and tasks of one process
(and makes tests fast), not between machines.
"""

from __future__ import annotations

import asyncio
import bisect
import threading
import time
from collections.abc import Sequence

from tidings._errors import NoSuchGroupError, TidingsValueError
from tidings.transport._base import (
    DEFAULT_DEDUPE_TTL,
    DEFAULT_MAXLEN,
    ConsumerStatus,
    DeadMessage,
    GroupStatus,
    Message,
    Start,
    check_name,
    check_options,
    is_entry_id,
)
from tidings.transport._memory_async import AsyncFace
from tidings.transport._memory_records import (
    TRIM_STEP,
    Entry,
    Group,
    Ids,
    Pending,
    Topic,
    check_body,
    format_id,
    parse_id,
    wake,
)

__all__ = ["AsyncInMemoryTransport", "InMemoryTransport"]


class InMemoryTransport:
    """A :class:`~tidings.transport.Transport` held in this process's memory.

    Args:
        maxlen: Entries a topic keeps; older ones are trimmed, read or not.
        approximate: Trim like ``MAXLEN ~`` (only once a topic is 100 entries over), the
            cheap way Redis does by default; False trims to exactly ``maxlen``.
        dedupe_ttl: Seconds a ``mark_done()`` is remembered.
    """

    target = "memory"

    def __init__(
        self,
        *,
        maxlen: int = DEFAULT_MAXLEN,
        approximate: bool = True,
        dedupe_ttl: float = DEFAULT_DEDUPE_TTL,
    ) -> None:
        if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1:
            raise TidingsValueError(f"maxlen must be an int of at least 1, not {maxlen!r}")
        if isinstance(dedupe_ttl, bool) or not isinstance(dedupe_ttl, (int, float)):
            raise TidingsValueError(f"dedupe_ttl must be a number of seconds, not {dedupe_ttl!r}")
        if not dedupe_ttl > 0:
            raise TidingsValueError(f"dedupe_ttl must be a number of seconds, not {dedupe_ttl!r}")
        self.maxlen = maxlen
        self.approximate = approximate
        self.dedupe_ttl = dedupe_ttl
        self._lock = threading.Lock()
        self._published = threading.Condition(self._lock)
        self._topics: dict[str, Topic] = {}
        self._ids = Ids()
        self._dead_ids = Ids()
        # Marks in insertion order; with one TTL their expiry times are in that order too, so
        # expired ones are dropped from the front.
        self._done: dict[tuple[str, str], float] = {}
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def __repr__(self) -> str:
        return f"<InMemoryTransport topics={len(self._topics)} maxlen={self.maxlen}>"

    def as_async(self) -> AsyncInMemoryTransport:
        """The asyncio face of this transport (the same topics and groups)."""
        return AsyncInMemoryTransport(self)

    # -- publishing -------------------------------------------------------------------------

    def publish(self, topic: str, event_id: str, body: bytes) -> str:
        """Append an entry to the topic (created on first use); return its id.

        Raises:
            TidingsTypeError: ``body`` is not bytes.
        """
        check_name("topic", topic)
        check_name("event id", event_id)
        body = check_body(body)
        with self._lock:
            state = self._topics.setdefault(topic, Topic())
            entry_id = self._ids.next()
            state.ids.append(entry_id)
            state.entries[entry_id] = Entry(entry_id, event_id, body)
            self._trim(state)
            self._published.notify_all()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(wake, future)
        return format_id(entry_id)

    def _trim(self, state: Topic) -> None:
        excess = len(state.ids) - self.maxlen
        if excess <= 0 or (self.approximate and excess < TRIM_STEP):
            return
        if self.approximate:
            excess -= excess % TRIM_STEP
        for entry_id in state.ids[:excess]:
            del state.entries[entry_id]
        del state.ids[:excess]

    # -- groups and reading -----------------------------------------------------------------

    def ensure_group(self, topic: str, group: str, *, start: Start = "first") -> None:
        """Create the group unless it exists (and the topic unless it exists).

        Args:
            topic: The topic.
            group: The group.
            start: ``"first"``: the group is handed every entry the topic still keeps;
                ``"new"``: only entries published from now on.

        Raises:
            TidingsValueError: ``start`` is neither.
        """
        check_name("topic", topic)
        check_name("group", group)
        if start not in ("first", "new"):
            raise TidingsValueError(f"start must be 'first' or 'new', not {start!r}")
        with self._lock:
            state = self._topics.setdefault(topic, Topic())
            if group not in state.groups:
                last = state.ids[-1] if start == "new" and state.ids else (0, 0)
                state.groups[group] = Group(last)

    def _group(self, operation: str, topic: str, group: str) -> tuple[Topic, Group]:
        state = self._topics.get(topic)
        found = state.groups.get(group) if state is not None else None
        if state is None or found is None:
            raise NoSuchGroupError(
                f"{operation} on topic {topic!r}: no group {group!r} (memory); "
                "call ensure_group() first",
                operation=operation,
                target=self.target,
            )
        return state, found

    def _existing(self, topic: str, group: str) -> Group | None:
        """The group, or None (ack, dead_letters and retry of a missing group find nothing)."""
        check_name("topic", topic)
        check_name("group", group)
        state = self._topics.get(topic)
        return state.groups.get(group) if state is not None else None

    def _take_new(self, topic: str, group: str, consumer: str, count: int) -> list[Message]:
        state, found = self._group("consume", topic, group)
        now = time.monotonic()
        start = bisect.bisect_right(state.ids, found.last)
        taken: list[Message] = []
        for entry_id in state.ids[start : start + count]:
            entry = state.entries[entry_id]
            found.pending[entry_id] = Pending(consumer, 1, now)
            taken.append(Message(format_id(entry_id), topic, entry.event_id, entry.body, 1))
            found.last = entry_id
        # As Redis 7.0: a read that hands out nothing does not make the caller a consumer.
        if taken:
            found.consumers[consumer] = now
        return taken

    def consume(
        self, topic: str, group: str, consumer: str, *, count: int = 10, block: float = 1.0
    ) -> list[Message]:
        """Hand the consumer up to ``count`` entries its group was not handed yet.

        Waits up to ``block`` seconds for one to be published when there is none (0 returns at
        once). The entries are pending for the consumer until acknowledged.

        Raises:
            NoSuchGroupError: The group was never created.
        """
        check_name("topic", topic)
        check_name("group", group)
        check_name("consumer", consumer)
        check_options(count=count, block=block)
        deadline = time.monotonic() + block
        with self._lock:
            while True:
                taken = self._take_new(topic, group, consumer, count)
                remaining = deadline - time.monotonic()
                if taken or remaining <= 0:
                    return taken
                self._published.wait(remaining)

    def claim(
        self, topic: str, group: str, consumer: str, *, min_idle: float, count: int = 10
    ) -> list[Message]:
        """Take over pending entries idle for at least ``min_idle`` seconds, oldest first.

        Whichever consumer held them, the caller included; each counts one more delivery.
        Pending entries that were trimmed from the topic are dropped from the pending list.

        Raises:
            NoSuchGroupError: The group was never created.
        """
        check_name("consumer", consumer)
        check_options(count=count, min_idle=min_idle)
        with self._lock:
            state, found = self._group("claim", topic, group)
            now = time.monotonic()
            taken: list[Message] = []
            for entry_id in sorted(found.pending):
                if len(taken) >= count:
                    break
                held = found.pending[entry_id]
                if now - held.since < min_idle:
                    continue
                entry = state.entries.get(entry_id)
                if entry is None:
                    del found.pending[entry_id]
                    continue
                held.consumer, held.since = consumer, now
                held.deliveries += 1
                taken.append(
                    Message(format_id(entry_id), topic, entry.event_id, entry.body, held.deliveries)
                )
            # As Redis: a claim that takes nothing does not make the caller a consumer.
            if taken:
                found.consumers[consumer] = now
            return taken

    def keep_alive(self, topic: str, group: str, consumer: str, ids: Sequence[str]) -> list[str]:
        """Reset the idle time of the entries the consumer still holds, without a delivery.

        Returns:
            The ids among ``ids`` that the consumer still holds (the others were claimed by
            another consumer, or acknowledged).

        Raises:
            NoSuchGroupError: The group was never created.
        """
        check_name("consumer", consumer)
        with self._lock:
            found = self._group("keep_alive", topic, group)[1]
            now = time.monotonic()
            held: list[str] = []
            for entry_id in ids:
                pending = found.pending.get(parse_id(entry_id)) if is_entry_id(entry_id) else None
                if pending is not None and pending.consumer == consumer:
                    pending.since = now
                    held.append(entry_id)
            if held:
                found.consumers[consumer] = now
            return held

    def ack(self, topic: str, group: str, ids: Sequence[str]) -> int:
        """Acknowledge entries; return how many of them were pending (0 for a missing group)."""
        with self._lock:
            found = self._existing(topic, group)
            if found is None:
                return 0
            return sum(
                is_entry_id(i) and found.pending.pop(parse_id(i), None) is not None for i in ids
            )

    # -- deduplication ----------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        while self._done:
            key, expiry = next(iter(self._done.items()))
            if expiry > now:
                return
            del self._done[key]

    def done(self, group: str, event_id: str) -> bool:
        """Whether ``mark_done(group, event_id)`` was called within the retention time."""
        with self._lock:
            self._expire(time.monotonic())
            return (group, event_id) in self._done

    def mark_done(self, group: str, event_id: str) -> bool:
        """Remember for ``dedupe_ttl`` seconds that the event ran in the group.

        Returns:
            True, or False when it was already marked (the first mark's retention stays).
        """
        check_name("group", group)
        check_name("event id", event_id)
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            if (group, event_id) in self._done:
                return False
            self._done[group, event_id] = now + self.dedupe_ttl
            return True

    def done_events(self, group: str, event_ids: Sequence[str]) -> set[str]:
        """Those of ``event_ids`` marked done in the group within the retention time."""
        check_name("group", group)
        with self._lock:
            self._expire(time.monotonic())
            return {e for e in event_ids if (group, e) in self._done}

    def complete(self, topic: str, group: str, messages: Sequence[Message]) -> int:
        """Mark the messages' events done in the group and acknowledge them, under one lock.

        Returns:
            How many of the messages were pending.
        """
        check_name("group", group)
        for message in messages:
            check_name("event id", message.event_id)
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            for message in messages:
                self._done.setdefault((group, message.event_id), now + self.dedupe_ttl)
            found = self._existing(topic, group)
            if found is None:
                return 0
            return sum(
                is_entry_id(m.id) and found.pending.pop(parse_id(m.id), None) is not None
                for m in messages
            )

    # -- dead letters -----------------------------------------------------------------------

    def dead_letter(self, topic: str, group: str, message: Message, reason: str) -> str:
        """Keep the message in the group's dead letters with the reason, and acknowledge it.

        Returns:
            Its id among the dead letters.

        Raises:
            NoSuchGroupError: The group was never created.
        """
        with self._lock:
            found = self._group("dead_letter", topic, group)[1]
            dead_id = format_id(self._dead_ids.next())
            found.dead.append(
                DeadMessage(
                    dead_id,
                    topic,
                    group,
                    message.id,
                    message.event_id,
                    message.body,
                    message.deliveries,
                    str(reason),
                    time.time(),
                )
            )
            if is_entry_id(message.id):
                found.pending.pop(parse_id(message.id), None)
            return dead_id

    def dead_letters(
        self, topic: str, group: str, *, count: int | None = None
    ) -> list[DeadMessage]:
        """The group's dead letters, oldest first (at most ``count``; none for a missing group)."""
        check_options(count=count)
        with self._lock:
            found = self._existing(topic, group)
            dead = [] if found is None else found.dead
            return list(dead if count is None else dead[:count])

    def retry(self, topic: str, group: str, ids: Sequence[str] | None = None) -> int:
        """Publish the group's dead letters (all, or those ids) onto the topic again.

        Each goes back as a new entry with its event id and body, and leaves the dead letters.
        Every group of the topic is handed it; those that marked the event done skip it.

        Returns:
            How many were published (0 for a missing group).
        """
        with self._lock:
            found = self._existing(topic, group)
            if found is None:
                return 0
            wanted = None if ids is None else set(ids)
            chosen = [d for d in found.dead if wanted is None or d.id in wanted]
            found.dead = [d for d in found.dead if d not in chosen]
        for dead in chosen:
            self.publish(topic, dead.event_id, dead.body)
        return len(chosen)

    def remove_group(self, topic: str, group: str) -> bool:
        """Delete the group with its pending entries and dead letters; False if it was not there."""
        with self._lock:
            if self._existing(topic, group) is None:
                return False
            del self._topics[topic].groups[group]
            return True

    # -- operations -------------------------------------------------------------------------

    def status(self, topics: Sequence[str] | None = None) -> list[GroupStatus]:
        """The state of each group of the topics (every topic with a group when ``None``)."""
        with self._lock:
            now = time.monotonic()
            names = sorted(self._topics) if topics is None else list(topics)
            report: list[GroupStatus] = []
            for name in names:
                state = self._topics.get(name)
                if state is None:
                    continue
                for group_name in sorted(state.groups):
                    group = state.groups[group_name]
                    held: dict[str, int] = dict.fromkeys(group.consumers, 0)
                    for pending in group.pending.values():
                        held[pending.consumer] = held.get(pending.consumer, 0) + 1
                    consumers = tuple(
                        ConsumerStatus(c, held[c], now - group.consumers.get(c, now))
                        for c in sorted(held)
                    )
                    lag = len(state.ids) - bisect.bisect_right(state.ids, group.last)
                    report.append(
                        GroupStatus(
                            name,
                            group_name,
                            len(state.ids),
                            len(group.pending),
                            lag,
                            consumers,
                            len(group.dead),
                        )
                    )
            return report

    def close(self) -> None:
        """Nothing to release; wakes threads waiting in ``consume()`` (they find nothing)."""
        with self._lock:
            self._published.notify_all()

    # -- for the asyncio face ---------------------------------------------------------------

    def _take_or_wait(
        self,
        topic: str,
        group: str,
        consumer: str,
        count: int,
        future: asyncio.Future[None] | None,
    ) -> list[Message]:
        """Take new entries; when there are none, register ``future`` to be woken by a publish."""
        with self._lock:
            taken = self._take_new(topic, group, consumer, count)
            if not taken and future is not None:
                self._waiters.append((future.get_loop(), future))
            return taken

    def _forget(self, future: asyncio.Future[None]) -> None:
        """Drop a waiter that stopped waiting (so an idle consumer does not pile them up)."""
        with self._lock:
            self._waiters = [(loop, f) for loop, f in self._waiters if f is not future]


class AsyncInMemoryTransport(AsyncFace):
    """The asyncio face of an :class:`InMemoryTransport`: an ``AsyncTransport``.

    Args:
        transport: The in-memory transport whose topics it serves; a new one when omitted.
    """

    sync: InMemoryTransport

    def __init__(self, transport: InMemoryTransport | None = None) -> None:
        super().__init__(transport if transport is not None else InMemoryTransport())
