"""The consumer on asyncio: each lane read by ``concurrency`` tasks of one event loop.

:class:`AsyncConsumer` is a :class:`~tidings.outbox.Consumer` whose :meth:`~AsyncConsumer.run`
starts an event loop (``asyncio.run``) in the calling thread and reads through the transport's
asyncio face (``transport.as_async()``: ``AsyncRedisTransport``, ``AsyncInMemoryTransport``,
or the ``async_transport`` given). The steps are the thread pool's (claim, read, then for each
entry skip, bury, leave or run; :mod:`tidings.outbox._judge` decides), with the same
guarantees:

* an entry is acknowledged (with its event's dedupe mark) only after its receiver returned;
* an ``async def`` receiver is awaited for at most its ``timeout``; a plain receiver runs in
  a thread of the loop's default executor (``asyncio.to_thread``), so one process can serve
  both kinds; building the arguments (loading models) runs in a thread too;
* a keeper task refreshes the claims of held entries every ``claim_idle / 3`` seconds;
* an event the group ran already is skipped; an entry handed out more than ``max_attempts``
  times, or whose last attempt failed, is a dead letter;
* :meth:`stop` (thread-safe; SIGTERM in ``tidings worker --pool asyncio``): the tasks stop
  reading, finish the entries they hold, acknowledge them, and :meth:`run` returns.

Tasks suit receivers that wait on the network (many in flight for one thread); receivers that
compute are better served by the threads (``--pool threads``, the default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tidings._errors import NoSuchGroupError, TidingsValueError, TransportError
from tidings.outbox._consumer import Consumer, start_of
from tidings.outbox._judge import Action, Verdict, after_failure, judge, log_buried, log_unfinished
from tidings.outbox._lanes import Lane
from tidings.outbox._receivers import DurableReceiver, Unreadable, arun_delivery
from tidings.transport._base import AsyncTransport, Message, Transport

__all__ = ["AsyncConsumer"]

logger = logging.getLogger("tidings.outbox.consumer")


class AsyncConsumer(Consumer):
    """A :class:`~tidings.outbox.Consumer` that runs its receivers as asyncio tasks.

    Takes :class:`~tidings.outbox.Consumer`'s arguments (``concurrency`` counts tasks per
    receiver, ``prefetch`` the entries a task reads at once), and:

    Args:
        async_transport: The asyncio face of ``transport`` (the same broker); by default
            ``transport.as_async()``, closed when :meth:`run` returns.

    Raises:
        TidingsValueError: ``transport`` has no ``as_async()`` and no ``async_transport``
            was given.
    """

    def __init__(
        self,
        transport: Transport,
        receivers: Iterable[DurableReceiver],
        *,
        async_transport: AsyncTransport | None = None,
        **options: Any,
    ) -> None:
        super().__init__(transport, receivers, **options)
        make: Any = getattr(transport, "as_async", None)
        if async_transport is None and not callable(make):
            raise TidingsValueError(
                f"{transport!r} has no asyncio face (as_async()): pass async_transport=, or "
                "run the consumer on threads"
            )
        # A face made here is closed by run(); one given is its owner's.
        self._owns_face = async_transport is None
        self._face: Callable[[], AsyncTransport] = make
        if async_transport is not None:
            given = async_transport
            self._face = lambda: given

    def _consume(self, once: bool) -> None:
        """Run the lanes' tasks (and the keeper) in a new event loop until they all returned."""
        asyncio.run(self._main(once))

    async def _main(self, once: bool) -> None:
        face = self._face()
        helpers = [asyncio.create_task(self._keep_async(face))]
        if self.on_progress is not None:
            helpers.append(asyncio.create_task(self._report()))
        try:
            await asyncio.gather(
                *(
                    self._guard_async(_Task(self, face, lane, f"{self.name}:{n}"), once)
                    for lane in self.lanes
                    for n in range(self.concurrency)
                )
            )
        finally:
            for helper in helpers:
                helper.cancel()
            for helper in helpers:
                with contextlib.suppress(asyncio.CancelledError):
                    await helper
            if self._owns_face:
                await face.close()
            if self.on_progress is not None:
                self.on_progress(self.stats)

    async def _guard_async(self, task: _Task, once: bool) -> None:
        try:
            await task.loop(once)
        except BaseException as exc:
            self._broke(task.lane, task.me, exc)

    async def _report(self) -> None:
        assert self.on_progress is not None
        while True:
            await asyncio.sleep(self.progress_interval)
            self.on_progress(self.stats)

    async def _keep_async(self, face: AsyncTransport) -> None:
        # Cancelled once every task returned: tasks finishing their entries after a stop
        # keep their claims too.
        while True:
            await asyncio.sleep(self.claim_idle / 3)
            for (topic, group, me), ids in self.held():
                try:
                    await face.keep_alive(topic, group, me, ids)
                except TransportError as exc:
                    logger.warning("%r cannot keep its claims alive (%s)", self, exc)

    async def pause(self, failures: int, what: str, exc: BaseException) -> None:
        """Log a failed round trip and wait before the next one (less if stopped meanwhile)."""
        deadline = time.monotonic() + self._delay(failures, what, exc)
        while not self.stopping and time.monotonic() < deadline:
            await asyncio.sleep(min(0.1, deadline - time.monotonic()))


class _Task:
    """One consumer task on one lane."""

    def __init__(self, consumer: AsyncConsumer, face: AsyncTransport, lane: Lane, me: str) -> None:
        self.consumer = consumer
        self.face = face
        self.lane = lane
        self.me = me

    async def loop(self, once: bool) -> None:
        consumer, lane = self.consumer, self.lane
        next_claim = 0.0
        failures = 0
        while not consumer.stopping:
            try:
                claimed: list[Message] = []
                if time.monotonic() >= next_claim:
                    claimed = await self.face.claim(
                        lane.topic,
                        lane.group,
                        self.me,
                        min_idle=consumer.claim_idle,
                        count=consumer.prefetch,
                    )
                    next_claim = time.monotonic() + consumer.claim_interval
                    if claimed:
                        consumer._count(claimed=len(claimed))
                fresh = await self.face.consume(
                    lane.topic,
                    lane.group,
                    self.me,
                    count=consumer.prefetch,
                    block=0 if claimed or once else consumer.block,
                )
            except NoSuchGroupError as exc:
                # The broker lost its groups (restarted without persistence): recreate.
                failures += 1
                await consumer.pause(failures, f"lost group {lane.group!r}", exc)
                with contextlib.suppress(TransportError):
                    await self.face.ensure_group(lane.topic, lane.group, start=start_of(lane))
                continue
            except TransportError as exc:
                failures += 1
                await consumer.pause(failures, f"cannot read {lane.topic!r}", exc)
                continue
            failures = 0
            batch = claimed + fresh
            if not batch:
                if once:
                    return
                continue
            consumer.hold(lane, self.me, [m.id for m in batch])
            try:
                done = await self._already_done(batch)
                for message in batch:
                    await self.handle(message, done)
            finally:
                consumer.release(lane, self.me, [m.id for m in batch])

    async def _already_done(self, batch: Sequence[Message]) -> set[str] | None:
        try:
            return await self.face.done_events(self.lane.group, [m.event_id for m in batch])
        except TransportError:
            return None  # each entry asks on its own in handle()

    async def handle(self, message: Message, done: set[str] | None) -> None:
        """Run one entry's receiver, or skip it, or dead-letter it (see the thread pool's)."""
        lane, consumer, face = self.lane, self.consumer, self.face
        try:
            if done is None:
                ran = await face.done(lane.group, message.event_id)
                done = {message.event_id} if ran else set()
            verdict = judge(lane, message, done, me=self.me)
            if isinstance(verdict, Verdict):
                if verdict.action is Action.SKIP:
                    await face.ack(lane.topic, lane.group, [message.id])
                    consumer._count(skipped=1)
                elif verdict.action is Action.BURY:
                    await self.bury(message, verdict.reason)
                return
            try:
                await arun_delivery(
                    verdict.spec, verdict.envelope.payload, verdict.event, consumer.session
                )
            except Unreadable as exc:
                await self.bury(message, str(exc))
                return
            except Exception as exc:
                reason = after_failure(verdict.spec, message, exc, retry_after=consumer.claim_idle)
                if reason is not None:
                    await self.bury(message, reason, logged=True)
                else:
                    consumer._count(failed=1)
                return
            await face.complete(lane.topic, lane.group, [message])
            done.add(message.event_id)
            consumer._count(done=1)
        except TransportError as exc:
            log_unfinished(lane, self.me, message, exc)

    async def bury(self, message: Message, reason: str, *, logged: bool = False) -> None:
        """Move ``message`` to the group's dead letters (which acknowledges it)."""
        if not logged:
            log_buried(self.lane, message, reason)
        await self.face.dead_letter(self.lane.topic, self.lane.group, message, reason)
        self.consumer._count(dead=1)
