"""The relay: a worker that claims stored deliveries and runs their receivers, at least once.

A relay repeats: claim a batch of due deliveries (oldest first), run each one's receiver
with the send's arguments rebuilt plus ``event=``, then record the batch's outcome in the
transaction that claims the next batch. A receiver that returned has its delivery deleted; one
that raised an ``Exception`` is retried after an exponential backoff with jitter, or moved to
the dead letters after its ``max_attempts``; a delivery for a receiver this worker does not
know stays and is reported. A receiver raising a ``BaseException`` that is not an
``Exception`` (``SystemExit``, ``KeyboardInterrupt``, a cancellation) stops the relay: the
outcome of the receivers run so far is recorded, the rest of the batch (that delivery
included) is released for another attempt and the exception propagates.

What a relay does with a claimed delivery is its mode's *action*: for ``durable`` rows it
calls the receiver; a relay built with ``actions={"queue": publish}`` also claims the rows of
that mode and hands each one to ``publish(row)`` (its return marks the row done, its
``Exception`` is a failed attempt, an awaitable it returns is awaited first).

Guarantee: at least once. A worker that dies after a receiver returned and before the batch's
outcome was recorded leaves its deliveries leased; they run again once the lease expires. A
live relay keeps its leases for as long as it holds the deliveries (the heartbeat), however
long its receivers take.
Order: none is promised. One relay takes deliveries oldest first, but retries, lease expiry and
several workers reorder them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime
import inspect
import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from tidings._errors import RelayBusyError, TidingsValueError
from tidings.outbox._heartbeat import Heartbeat
from tidings.outbox._outbox import Outbox
from tidings.outbox._receivers import (
    DEFAULT_BACKOFF,
    DEFAULT_BACKOFF_MAX,
    DEFAULT_MAX_ATTEMPTS,
    DurableReceiver,
    Event,
    Unreadable,
    backoff_delay,
    registered,
    run_delivery,
    within,
)
from tidings.outbox._records import Action, Claimed, Failure, Outcome, Postpone, utcnow
from tidings.outbox._running import InLoop
from tidings.outbox._schema import FORMAT_VERSION
from tidings.outbox._store import Store
from tidings.outbox._wakeup import Wakeup

__all__ = ["Relay", "RelayBusyError", "RelayStats"]

logger = logging.getLogger("tidings.outbox")


@dataclass
class RelayStats:
    """What a relay did so far.

    Attributes:
        done: Deliveries whose receiver returned.
        retried: Attempts that raised and will be retried.
        dead: Deliveries moved to the dead letters.
        unknown: Deliveries left in place because their receiver is unknown here.
        postponed: Deliveries an action postponed (a transport that failed), attempt not
            counted.
        unknown_receivers: ``(signal, receiver)`` names this worker does not know.
        started: ``time.monotonic()`` when the relay started.
        ended: ``time.monotonic()`` when it stopped, for the report on exit (None while it
            runs).
    """

    done: int = 0
    retried: int = 0
    dead: int = 0
    unknown: int = 0
    postponed: int = 0
    unknown_receivers: set[tuple[str, str]] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None


class Relay(InLoop):
    """Runs the durable receivers of the deliveries stored in an outbox.

    Args:
        outbox: The outbox to relay.
        receivers: The receivers this relay runs; None: the outbox's ``receivers``, or if
            those are None too, every durable receiver connected in this process (looked up
            afresh for every batch).
        batch_size: Deliveries claimed at once.
        lease: Seconds a claim holds a delivery; a worker that dies holding it lets it go
            after this long. A thread of the relay's renews it every third of it while the
            relay holds the delivery (see :mod:`tidings.outbox._heartbeat`).
        poll_interval: Seconds between claims when nothing is due; a commit that writes a
            delivery wakes the relay sooner (see :attr:`wakeup`).
        unknown_delay: Seconds before a delivery for an unknown receiver is looked at again.
        wait: On SQLite, wait while another relay holds the database's relay lease (True) or
            raise :class:`RelayBusyError` at once (False).
        name: This relay's name in leases (default ``host:pid:random``).
        on_progress: Called with the stats every ``progress_interval`` seconds and on exit.
        progress_interval: See ``on_progress``.
        actions: Actions of other modes (``{"queue": publish}``): the relay claims those rows
            too and hands each to its action (see :data:`Action`). None: the outbox's own
            (publishing queue and broadcast rows when it has a transport).
        durable: Claim ``durable`` rows and run their receivers (False: only ``actions``).
        claim: ``"lease"`` (the default): a claim writes a lease on its rows and commits
            before they run. ``"lock"`` (PostgreSQL): the rows stay locked by a transaction
            held open while the batch runs, which records their outcome and commits; one
            write per delivery instead of two, and a dead worker's rows are free at once, but
            a worker killed while running a receiver does not count that attempt.

    Raises:
        TidingsValueError: An argument the relay cannot run with (``batch_size`` under 1, a
            delay that is not a positive number of seconds, an unknown ``claim``), named with
            its value.
    """

    def __init__(
        self,
        outbox: Outbox,
        *,
        receivers: Iterable[DurableReceiver] | None = None,
        batch_size: int = 50,
        lease: float = 60.0,
        poll_interval: float = 0.5,
        unknown_delay: float = 60.0,
        wait: bool = True,
        name: str | None = None,
        on_progress: Callable[[RelayStats], None] | None = None,
        progress_interval: float = 5.0,
        actions: Mapping[str, Action] | None = None,
        durable: bool = True,
        claim: str = "lease",
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise TidingsValueError(f"Relay(batch_size=...) must be at least 1, got {batch_size!r}")
        delays = {
            "lease": lease,
            "poll_interval": poll_interval,
            "unknown_delay": unknown_delay,
            "progress_interval": progress_interval,
        }
        for argument, seconds in delays.items():
            if not seconds > 0:  # NaN too: it compares false to everything
                raise TidingsValueError(
                    f"Relay({argument}=...) must be a positive number of seconds, got {seconds!r}"
                )
        if actions is None:
            actions = outbox.relay_actions()
        self._actions: dict[str, Action] = {str(mode): act for mode, act in actions.items()}
        self._actions.pop("durable", None)
        modes = (["durable"] if durable else []) + sorted(self._actions)
        if not modes:
            raise TidingsValueError("a relay with durable=False needs actions for other modes")
        self.modes = tuple(modes)
        if claim not in ("lease", "lock"):
            raise TidingsValueError(f"claim must be 'lease' or 'lock', not {claim!r}")
        if claim == "lock" and not outbox._store.postgresql:
            raise TidingsValueError(
                "claim='lock' needs PostgreSQL (row locks held by the batch's transaction); "
                f"{outbox.engine.dialect.name} relays lease their rows"
            )
        self.claim = claim
        self.outbox = outbox
        self._store: Store = outbox._store
        if receivers is None:
            receivers = outbox.receivers
        self._receivers = None if receivers is None else {spec.key: spec for spec in receivers}
        self.batch_size = batch_size
        self.lease = lease
        self.poll_interval = poll_interval
        self.unknown_delay = unknown_delay
        self.wait = wait
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.on_progress = on_progress
        self.progress_interval = progress_interval
        self.stats = RelayStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._private_loop: asyncio.AbstractEventLoop | None = None
        self._last_progress = time.monotonic()
        self._claiming: Connection | None = None  # see _claim_alone
        self._heartbeat = Heartbeat(self._store, self.name, lease)
        #: What an idle relay waits on: LISTEN/NOTIFY on PostgreSQL, a kick from a commit of
        #: this process on SQLite, else the poll alone.
        self.wakeup = Wakeup(outbox.engine, outbox.tables.pending, self)

    def __repr__(self) -> str:
        return f"<Relay {self.name!r} of {self.outbox!r}>"

    # -- running --------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> None:
        """Relay in the calling thread until :meth:`stop` is called.

        One run at a time: a relay object runs once at a time, whether by ``run()``,
        :meth:`arun`, :meth:`start` or ``async with`` (its name holds its leases). A
        :meth:`stop` made while it does not run ends the next run as it begins; a run clears
        it as it ends, so a stopped relay runs again.

        Args:
            once: Return as soon as nothing is due (drain and exit).

        Raises:
            TidingsRuntimeError: This relay is running already.
            RelayBusyError: On SQLite with ``wait=False``, another relay is running.
            BaseException: What a receiver raised that is not an ``Exception``, after the
                leases were released.
        """
        self._take_run()
        self._run_taken(once)

    def _run_taken(self, once: bool) -> None:
        try:
            self._relay(once)
        finally:
            self._loop = None  # arun's loop, before another run may set its own
            self._end_run()

    def _relay(self, once: bool) -> None:
        self.stats.started, self.stats.ended = time.monotonic(), None
        if not once:  # a drain never waits: no LISTEN connection for it
            self.wakeup.start()
        try:
            self._hold_relay_lease()
            self._loop_batches(once)
        finally:
            self._heartbeat.stop()
            try:
                if self._store.sqlite:
                    self._store.drop_relay_lease(self.name)
            except DBAPIError:
                logger.warning("%r could not give its relay lease up; it expires", self)
            finally:
                self.wakeup.close()
                if self._private_loop is not None:
                    self._private_loop.close()
                    self._private_loop = None
                self.stats.ended = time.monotonic()
                self._progress(force=True)

    def stop(self) -> None:
        """Ask it to stop once the batch in hand is done (thread-safe).

        With no run going on, the next :meth:`run` or :meth:`arun` returns as it begins,
        having claimed nothing.
        """
        super().stop()
        self.wakeup.set()

    async def arun(self, *, once: bool = False) -> None:
        """Relay from async code.

        The database work runs in a thread, async receivers in the running loop. Cancelling
        this stops the relay (the running receiver finishes first).

        Args:
            once: Return as soon as nothing is due.

        Raises:
            TidingsRuntimeError: This relay is running already (see :meth:`run`).
        """
        self._take_run()
        await self._start_arun(once)

    def _start_arun(self, once: bool) -> Awaitable[None]:
        try:
            self._loop = asyncio.get_running_loop()
            runner = self._loop.run_in_executor(None, self._run_taken, once)
        except BaseException:
            self._loop = None
            self._end_run()
            raise
        return self._await_run(runner)

    async def _await_run(self, runner: asyncio.Future[None]) -> None:
        try:
            await asyncio.shield(runner)
        except asyncio.CancelledError:
            self.stop()
            await runner
            raise

    # -- the loop -------------------------------------------------------------------------

    def _hold_relay_lease(self) -> None:
        if not self._store.sqlite:
            return
        told = False
        while True:
            with self._store.transaction() as conn:
                busy = self._store.take_relay_lease(conn, self.name, self.lease, utcnow())
            if busy is None:
                self._heartbeat.lost.clear()
                return
            holder, until = busy
            message = (
                f"another relay ({holder}) holds the relay lease of {self.outbox.engine.url!r} "
                f"until {until:%Y-%m-%d %H:%M:%S} UTC: one relay runs per SQLite database; "
                "stop it, or wait for its lease to expire"
            )
            if not self.wait:
                raise RelayBusyError(message)
            if not told:
                logger.warning("%s; waiting", message)
                told = True
            if self._stopping.wait(self.poll_interval):
                return

    def _back_off(self, exc: DBAPIError, failures_in_a_row: int) -> None:
        delay = min(30.0, 0.5 * 2 ** (failures_in_a_row - 1))
        logger.warning("%r cannot claim (%s); retrying in %.1f s", self, exc.orig, delay)
        self._stopping.wait(delay)

    def _loop_locked(self, once: bool) -> None:
        # claim="lock": one transaction per batch holds the rows' locks while they run and
        # records their outcome before it commits.
        failures_in_a_row = 0
        while not self._stopping.is_set():
            outcome = Outcome()
            try:
                with self.outbox.engine.connect() as conn:
                    taken = self._store.lock(conn, self.batch_size, utcnow(), self.modes)
                    rows = taken.rows
                    try:
                        if rows:
                            self._run_batch(rows, outcome)
                    finally:
                        if rows:
                            self._store.settle(conn, outcome, taken)
                        conn.commit()
            except DBAPIError as exc:
                failures_in_a_row += 1
                self._back_off(exc, failures_in_a_row)
                continue
            failures_in_a_row = 0
            self._count(outcome)
            if not rows:
                if once:
                    return
                self.wakeup.wait(self.poll_interval)
            self._progress()

    def _loop_batches(self, once: bool) -> None:
        # A batch's outcome is recorded in the transaction that claims the next batch: one
        # transaction per batch. What is left when the loop ends is recorded on its own.
        if self.claim == "lock":
            self._loop_locked(once)
            return
        # The rows of a batch stay in the heartbeat's care from their claim until the claim
        # after it records them (a claim that fails leaves them there).
        outcome = Outcome()
        failures_in_a_row = 0
        hold = self._heartbeat.hold
        try:
            while not self._stopping.is_set():
                try:
                    rows = self._claim(outcome)
                except DBAPIError as exc:
                    failures_in_a_row += 1
                    self._back_off(exc, failures_in_a_row)
                    continue
                failures_in_a_row = 0
                self._count(outcome)
                outcome = Outcome()
                hold(rows or ())
                if rows is None:  # lost the SQLite relay lease while stalled
                    self._hold_relay_lease()
                    continue
                if rows:
                    self._run_batch(rows, outcome)
                elif once:
                    return
                else:
                    self.wakeup.wait(self.poll_interval)
                self._progress()
        finally:
            self._release_claiming()
            if outcome:
                self._record(outcome)

    def _claim(self, outcome: Outcome) -> list[Claimed] | None:
        # The deliveries done are deleted by the claim (on PostgreSQL in its statement: a
        # batch of receivers that all returned costs one round trip); the rest of the outcome
        # is recorded first, in the same transaction.
        store = self._store
        if store.postgresql and not (outcome.failures or outcome.released or outcome.postponed):
            return self._claim_alone(outcome.done)
        rest = dataclasses.replace(outcome, done=[])
        with store.transaction(single=not rest) as conn:
            if store.sqlite and store.take_relay_lease(conn, self.name, self.lease, utcnow()):
                store.record(conn, self.name, outcome)  # no claim to delete the ones done
                return None
            if rest:
                store.record(conn, self.name, rest)
            # After the record: a retry due at once is due for this claim.
            return store.claim(
                conn, self.name, self.batch_size, self.lease, utcnow(), self.modes, outcome.done
            )

    def _claim_alone(self, done: list[int]) -> list[Claimed]:
        # The claim is its own transaction (autocommit), on a connection the relay keeps from
        # batch to batch: a pool checkout and checkin per batch cost as much Python as running
        # the batch's receivers. A database error drops the connection; the next claim takes
        # a fresh one.
        conn = self._claiming
        if conn is None:
            conn = self.outbox.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._claiming = conn
        try:
            return self._store.claim(
                conn, self.name, self.batch_size, self.lease, utcnow(), self.modes, done
            )
        except DBAPIError:
            self._claiming = None
            conn.close()
            raise

    def _release_claiming(self) -> None:
        if self._claiming is not None:
            self._claiming.close()
            self._claiming = None

    def _run_batch(self, rows: list[Claimed], outcome: Outcome) -> None:
        known: Mapping[tuple[str, str], DurableReceiver] = (
            self._receivers if self._receivers is not None else registered()
        )
        lost = self._heartbeat.lost
        for index, row in enumerate(rows):
            if self._stopping.is_set() or lost.is_set():
                outcome.released.extend(rows[index:])
                return
            self._progress()  # also while a batch outlasts the interval
            spec = known.get((row.signal, row.receiver))
            durable = row.delivery == "durable"
            if durable and spec is None:
                self._report_unknown(row)
                outcome.postponed.append((row, self.unknown_delay))
                continue
            try:
                if row.format > FORMAT_VERSION:
                    raise Unreadable(
                        f"stored in format {row.format}; this release of tidings reads formats "
                        f"up to {FORMAT_VERSION}"
                    )
                if durable:
                    assert spec is not None
                    self._deliver(spec, row)
                else:
                    self._act(spec, row)
            except Postpone as later:
                outcome.postponed.append((row, later.delay))
                self.stats.postponed += 1
            except Exception as exc:
                outcome.failures.append(self._failure(spec, row, exc))
            except BaseException:
                outcome.released.extend(rows[index:])
                raise
            else:
                outcome.done.append(row.id)

    def _record(self, outcome: Outcome) -> None:
        try:
            self._store.finish(self.name, outcome)
        except DBAPIError as exc:
            logger.warning(
                "%r cannot record a batch's outcome (%s): its %d deliveries run again when "
                "their lease expires",
                self,
                exc.orig,
                len(outcome),
            )
            return
        self._count(outcome)

    def _count(self, outcome: Outcome) -> None:
        self.stats.done += len(outcome.done)
        self.stats.dead += sum(failure.dead for failure in outcome.failures)
        self.stats.retried += sum(not failure.dead for failure in outcome.failures)
        self.stats.unknown += sum(row.delivery == "durable" for row, _ in outcome.postponed)

    def _act(self, spec: DurableReceiver | None, row: Claimed) -> None:
        result = self._actions[row.delivery](row)
        if inspect.isawaitable(result):
            timeout = spec.timeout if spec is not None else None
            self._await(within(result, timeout, f"the {row.delivery} action of {row.receiver}"))

    def _deliver(self, spec: DurableReceiver, row: Claimed) -> None:
        event = Event(
            id=row.event_id,
            attempt=row.attempts,
            sent_at=row.sent_at.replace(tzinfo=datetime.timezone.utc),
            signal=row.signal,
            receiver=row.receiver,
        )
        run_delivery(spec, row.payload, event, self._open_session, self._await)

    def _open_session(self) -> Session:
        return Session(self.outbox.engine)

    def _await(self, awaitable: Coroutine[Any, Any, Any]) -> None:
        if self._loop is not None:
            future = asyncio.run_coroutine_threadsafe(awaitable, self._loop)
            try:
                future.result()
            except concurrent.futures.CancelledError:
                raise asyncio.CancelledError from None
            return
        if self._private_loop is None:
            self._private_loop = asyncio.new_event_loop()
        self._private_loop.run_until_complete(awaitable)

    def _failure(self, spec: DurableReceiver | None, row: Claimed, exc: Exception) -> Failure:
        unreadable = isinstance(exc, Unreadable)
        max_attempts = spec.max_attempts if spec is not None else DEFAULT_MAX_ATTEMPTS
        dead = unreadable or row.attempts >= max_attempts
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        error = f"{type(exc).__qualname__}: {exc}" if not unreadable else str(exc)
        log = logger.error if dead else logger.warning
        log(
            "durable receiver %s of %s failed on attempt %d (event %s): %s; %s",
            row.receiver,
            row.signal,
            row.attempts,
            row.event_id,
            error,
            "moved to the dead letters" if dead else "retried later",
        )
        if dead:
            delay = 0.0
        elif spec is not None:
            delay = spec.delay(row.attempts)
        else:
            delay = backoff_delay(row.attempts, DEFAULT_BACKOFF, DEFAULT_BACKOFF_MAX)
        return Failure(row, error, text, dead, delay)

    def _report_unknown(self, row: Claimed) -> None:
        key = (row.signal, row.receiver)
        if key in self.stats.unknown_receivers:
            return
        self.stats.unknown_receivers.add(key)
        logger.warning(
            "no durable receiver %r of signal %r is known to %r: its deliveries stay in the "
            "outbox (looked at again every %.0f s); import the module that connects it",
            row.receiver,
            row.signal,
            self,
            self.unknown_delay,
        )

    def _progress(self, force: bool = False) -> None:
        if self.on_progress is None:
            return
        now = time.monotonic()
        if force or now - self._last_progress >= self.progress_interval:
            self._last_progress = now
            self.on_progress(self.stats)
