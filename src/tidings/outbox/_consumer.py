"""The consumer: worker threads that run queue and broadcast receivers from a transport.

For every receiver it serves, a consumer reads the receiver's stream through the receiver's
group (``{receiver}`` for a queue receiver, ``{receiver}@{node}`` for a broadcast one) with
``concurrency`` threads, each a consumer of the group named ``host:pid:n``. Each thread repeats:

1. every ``claim_interval`` seconds, claim entries of the group idle for ``claim_idle``
   seconds (those of a worker that died, and failed attempts waiting for their retry);
2. read new entries (waiting up to ``block`` seconds);
3. for each entry: skip it (acknowledged) if its event already ran in the group; move it to
   the group's dead letters if it was handed out more than ``max_attempts`` times, or cannot
   be read; else run the receiver with the send's arguments rebuilt and ``event=``, then mark
   the event done in the group and acknowledge the entry.

While an entry is held, a keeper thread refreshes its claim every ``claim_idle / 3`` seconds:
a receiver that runs longer than ``claim_idle`` is not taken over while its worker is alive.

Guarantee: at least once per group. A worker that dies mid-receiver leaves the entry pending;
another worker claims it after ``claim_idle`` and runs it again (``event.attempt`` is the
group's delivery count). An attempt that raised is left pending and retried after
``claim_idle``, until its ``max_attempts``-th attempt fails: then it is a dead letter.
A re-published entry (same event id) is skipped by a group that already ran it.

What to do with an entry (step 3) is decided in :mod:`tidings.outbox._judge`; the lanes and
the stats are in :mod:`tidings.outbox._lanes`.

Stopping (:meth:`Consumer.stop`, SIGTERM in ``tidings worker``): threads stop reading, finish
the entries they hold (at most ``prefetch`` each), acknowledge them and return.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

from sqlalchemy.orm import Session

from tidings._delivery import Delivery
from tidings._errors import NoSuchGroupError, TidingsValueError, TransportError
from tidings.outbox._judge import Action, Verdict, after_failure, judge, log_buried, log_unfinished
from tidings.outbox._lanes import ConsumerStats, Lane, describe_lanes, lanes_for
from tidings.outbox._receivers import DurableReceiver, Unreadable, run_delivery
from tidings.outbox._running import Background
from tidings.transport._base import Message, Start, Transport

__all__ = ["Consumer", "ConsumerStats", "Lane", "describe_lanes", "start_of"]

logger = logging.getLogger("tidings.outbox.consumer")


class Consumer(Background):
    """Runs queue and broadcast receivers of an outbox, reading their streams.

    Args:
        transport: Where the streams are.
        receivers: The queue and broadcast receivers to run.
        node: This process's node name (broadcast groups are ``{receiver}@{node}``).
        open_session: Opens the session model arguments are reloaded in; None: a payload
            holding a model cannot be run here (it becomes a dead letter).
        concurrency: Threads per receiver (each one consumer of the group).
        prefetch: Entries a thread reads at once.
        block: Seconds a read waits for new entries (and the longest a stop waits for it).
        claim_idle: Seconds an entry must sit untouched before another consumer takes it
            over; also the delay before a failed attempt is retried. Longer than the
            ``timeout`` of every async receiver.
        claim_interval: Seconds between claims (default ``claim_idle / 2``).
        name: The consumers' base name (default ``host:pid``); threads append ``:n``.
        on_progress: Called with the stats every ``progress_interval`` seconds and on exit.
        progress_interval: See ``on_progress``.
    """

    def __init__(
        self,
        transport: Transport,
        receivers: Iterable[DurableReceiver],
        *,
        node: str,
        open_session: Callable[[], Session] | None = None,
        concurrency: int = 1,
        prefetch: int = 10,
        block: float = 1.0,
        claim_idle: float = 30.0,
        claim_interval: float | None = None,
        name: str | None = None,
        on_progress: Callable[[ConsumerStats], None] | None = None,
        progress_interval: float = 5.0,
    ) -> None:
        super().__init__()
        if concurrency < 1 or prefetch < 1 or block < 0 or claim_idle <= 0:
            raise TidingsValueError(
                "concurrency and prefetch must be >= 1, block >= 0 and claim_idle positive; got "
                f"{concurrency}, {prefetch}, {block}, {claim_idle}"
            )
        self.transport = transport
        self.lanes = lanes_for(receivers, node)
        for lane in self.lanes:
            for spec in lane.receivers.values():
                if spec.timeout is not None and spec.timeout >= claim_idle:
                    raise TidingsValueError(
                        f"receiver {spec.name!r} of {spec.signal!r}: its timeout "
                        f"({spec.timeout} s) must be shorter than claim_idle ({claim_idle} s), "
                        "or its entries are taken over while it runs"
                    )
        self.node = node
        self.open_session = open_session
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.block = block
        self.claim_idle = claim_idle
        self.claim_interval = claim_idle / 2 if claim_interval is None else claim_interval
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.on_progress = on_progress
        self.progress_interval = progress_interval
        self.stats = ConsumerStats()
        self._stats_lock = threading.Lock()
        self._held: dict[tuple[str, str, str], set[str]] = {}
        self._held_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {len(self.lanes)} streams>"

    # -- running --------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> None:
        """Consume until :meth:`stop`; return when every thread (or task) finished.

        Args:
            once: Each thread returns when a read and a claim find nothing (drain and exit).

        Raises:
            BaseException: What a receiver raised that is not an ``Exception``.
        """
        self.stats.started = time.monotonic()
        self.ensure_groups()
        self._consume(once)
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def _consume(self, once: bool) -> None:
        """Run the lanes' threads (and the keeper) until they all returned."""
        threads = [
            threading.Thread(
                target=self._guard,
                args=(lane, f"{self.name}:{n}", once),
                name=f"{self.name}:{n} {lane.group}",
                daemon=True,
            )
            for lane in self.lanes
            for n in range(self.concurrency)
        ]
        finished = threading.Event()
        keeper = threading.Thread(
            target=self._keep, args=(finished,), name=f"{self.name} keeper", daemon=True
        )
        keeper.start()
        for thread in threads:
            thread.start()
        last = time.monotonic()
        try:
            while any(thread.is_alive() for thread in threads):
                for thread in threads:
                    thread.join(0.1)
                if (
                    self.on_progress is not None
                    and time.monotonic() - last >= self.progress_interval
                ):
                    last = time.monotonic()
                    self.on_progress(self.stats)
        finally:
            self._stopping.set()
            for thread in threads:
                thread.join()
            finished.set()
            keeper.join()
            if self.on_progress is not None:
                self.on_progress(self.stats)

    def ensure_groups(self) -> None:
        """Create the groups this consumer reads, if missing (waits while the broker is down).

        :meth:`run` does it first; a worker does it before its relay publishes, so a new
        broadcast node reads what is published from then on.
        """
        failures = 0
        while not self._stopping.is_set():
            try:
                for lane in self.lanes:
                    self._ensure_group(lane)
                return
            except TransportError as exc:
                failures += 1
                self._back_off(failures, "cannot create its groups", exc)

    def _ensure_group(self, lane: Lane) -> None:
        self.transport.ensure_group(lane.topic, lane.group, start=start_of(lane))

    def _back_off(self, failures: int, what: str, exc: BaseException) -> None:
        self._stopping.wait(self._delay(failures, what, exc))

    def _delay(self, failures: int, what: str, exc: BaseException) -> float:
        """Log a failed round trip; return the seconds to wait before the next one."""
        delay = min(30.0, 0.2 * 2.0 ** (failures - 1))
        logger.warning("%r %s (%s); retrying in %.1f s", self, what, exc, delay)
        return delay

    def session(self) -> Session:
        """A session to load model arguments in (``open_session``).

        Raises:
            Unreadable: This consumer has no ``open_session``: the entry cannot run here.
        """
        if self.open_session is None:
            raise Unreadable("the arguments hold a model and this worker has no database")
        return self.open_session()

    # -- one thread -----------------------------------------------------------------------

    def _guard(self, lane: Lane, me: str, once: bool) -> None:
        try:
            _Worker(self, lane, me).loop(once)
        except BaseException as exc:
            self._broke(lane, me, exc)

    def _broke(self, lane: Lane, me: str, exc: BaseException) -> None:
        """A thread (task) ended on an error: keep the first one for run(), stop the others."""
        logger.exception("consumer %s of %s stopped on an error", me, lane.group)
        if self.error is None:
            self.error = exc
        self._stopping.set()

    def _count(self, **increments: int) -> None:
        with self._stats_lock:
            for name, value in increments.items():
                setattr(self.stats, name, getattr(self.stats, name) + value)

    # -- the keeper -----------------------------------------------------------------------

    def hold(self, lane: Lane, me: str, ids: Iterable[str]) -> None:
        """Record entries ``me`` holds: the keeper refreshes their claim."""
        with self._held_lock:
            self._held.setdefault((lane.topic, lane.group, me), set()).update(ids)

    def release(self, lane: Lane, me: str, ids: Iterable[str]) -> None:
        """Forget entries ``me`` no longer holds."""
        with self._held_lock:
            held = self._held.get((lane.topic, lane.group, me))
            if held is not None:
                held.difference_update(ids)

    def _keep(self, finished: threading.Event) -> None:
        # Runs until every consumer thread returned: threads finishing their entries after a
        # stop keep their claims too.
        while not finished.wait(self.claim_idle / 3):
            for (topic, group, me), ids in self.held():
                try:
                    self.transport.keep_alive(topic, group, me, ids)
                except TransportError as exc:
                    logger.warning("%r cannot keep its claims alive (%s)", self, exc)

    def held(self) -> list[tuple[tuple[str, str, str], list[str]]]:
        """``((topic, group, consumer), ids)`` of the entries held now, for the keeper."""
        with self._held_lock:
            return [(key, sorted(ids)) for key, ids in self._held.items() if ids]


def start_of(lane: Lane) -> Start:
    """Where a new group of ``lane`` starts reading."""
    # A queue group reads what was published before its first worker started; a node's
    # broadcast group starts with what is published from now on.
    return "first" if lane.mode is Delivery.QUEUE else "new"


class _Worker:
    """One consumer thread on one lane."""

    def __init__(self, consumer: Consumer, lane: Lane, me: str) -> None:
        self.consumer = consumer
        self.transport = consumer.transport
        self.lane = lane
        self.me = me
        self._loop: asyncio.AbstractEventLoop | None = None

    def loop(self, once: bool) -> None:
        consumer = self.consumer
        next_claim = 0.0
        failures = 0
        try:
            while not consumer.stopping:
                try:
                    claimed: list[Message] = []
                    if time.monotonic() >= next_claim:
                        claimed = self.transport.claim(
                            self.lane.topic,
                            self.lane.group,
                            self.me,
                            min_idle=consumer.claim_idle,
                            count=consumer.prefetch,
                        )
                        next_claim = time.monotonic() + consumer.claim_interval
                        if claimed:
                            consumer._count(claimed=len(claimed))
                    fresh = self.transport.consume(
                        self.lane.topic,
                        self.lane.group,
                        self.me,
                        count=consumer.prefetch,
                        block=0 if claimed or once else consumer.block,
                    )
                except NoSuchGroupError as exc:
                    # The broker lost its groups (restarted without persistence): recreate.
                    failures += 1
                    consumer._back_off(failures, f"lost group {self.lane.group!r}", exc)
                    self._recreate()
                    continue
                except TransportError as exc:
                    failures += 1
                    consumer._back_off(failures, f"cannot read {self.lane.topic!r}", exc)
                    continue
                failures = 0
                batch = claimed + fresh
                if not batch:
                    if once:
                        return
                    continue
                consumer.hold(self.lane, self.me, [m.id for m in batch])
                try:
                    done = self._already_done(batch)
                    for message in batch:
                        self.handle(message, done)
                finally:
                    consumer.release(self.lane, self.me, [m.id for m in batch])
        finally:
            if self._loop is not None:
                self._loop.close()

    def _recreate(self) -> None:
        try:
            self.consumer._ensure_group(self.lane)
        except TransportError as exc:
            logger.warning("cannot recreate group %r (%s)", self.lane.group, exc)

    def _already_done(self, batch: Sequence[Message]) -> set[str] | None:
        """The batch's events that ran in the group already (one round trip), None if unknown."""
        try:
            return self.transport.done_events(self.lane.group, [m.event_id for m in batch])
        except TransportError:
            return None  # each entry asks on its own in handle()

    def handle(self, message: Message, done: set[str] | None = None) -> None:
        """Run one entry's receiver, or skip it, or dead-letter it.

        Args:
            message: The entry.
            done: The events of its batch that ran in the group (the entry's is added once it
                ran); None: ask the transport.
        """
        lane, consumer = self.lane, self.consumer
        try:
            if done is None:
                done = (
                    {message.event_id}
                    if self.transport.done(lane.group, message.event_id)
                    else set()
                )
            verdict = judge(lane, message, done, me=self.me)
            if isinstance(verdict, Verdict):
                if verdict.action is Action.SKIP:
                    self.transport.ack(lane.topic, lane.group, [message.id])
                    consumer._count(skipped=1)
                elif verdict.action is Action.BURY:
                    self.bury(message, verdict.reason)
                return
            spec = verdict.spec
            try:
                run_delivery(
                    spec, verdict.envelope.payload, verdict.event, consumer.session, self._wait
                )
            except Unreadable as exc:
                self.bury(message, str(exc))
                return
            except Exception as exc:
                reason = after_failure(spec, message, exc, retry_after=consumer.claim_idle)
                if reason is not None:
                    self.bury(message, reason, logged=True)
                else:
                    consumer._count(failed=1)
                return
            # The dedupe mark and the acknowledgement together, in one round trip.
            self.transport.complete(lane.topic, lane.group, [message])
            done.add(message.event_id)
            consumer._count(done=1)
        except TransportError as exc:
            log_unfinished(lane, self.me, message, exc)

    def _wait(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(coroutine)

    def bury(self, message: Message, reason: str, *, logged: bool = False) -> None:
        """Move ``message`` to the group's dead letters (which acknowledges it)."""
        if not logged:
            log_buried(self.lane, message, reason)
        self.transport.dead_letter(self.lane.topic, self.lane.group, message, reason)
        self.consumer._count(dead=1)
