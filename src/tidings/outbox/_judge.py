"""What a consumer does with one entry, whichever pool runs it (threads or asyncio tasks).

:func:`judge` looks at an entry and says what to do with it, without a round trip: skip it
(its event ran in the group already, or another mode's groups run it), bury it (unreadable,
handed out more than ``max_attempts`` times), leave it pending for a worker that knows its
signal, or run its receiver with the :class:`Event` built here. :func:`after_failure` says
whether an attempt that raised is retried or buried. The pools do the round trips.
"""

from __future__ import annotations

import enum
import logging
import traceback
from dataclasses import dataclass

from tidings.outbox._lanes import Lane
from tidings.outbox._receivers import DurableReceiver, Event
from tidings.outbox._remote import Envelope, event_uuid, open_envelope
from tidings.outbox._schema import FORMAT_VERSION
from tidings.transport._base import Message

__all__ = ["Action", "Run", "Verdict", "after_failure", "judge", "log_buried", "log_unfinished"]

logger = logging.getLogger("tidings.outbox.consumer")


class Action(enum.Enum):
    """What to do with an entry."""

    #: Acknowledge it without running anything.
    SKIP = "skip"
    #: Move it to the group's dead letters (``Verdict.reason`` says why).
    BURY = "bury"
    #: Leave it pending, for a worker that knows its signal.
    LEAVE = "leave"


@dataclass(frozen=True, slots=True)
class Verdict:
    """:func:`judge`'s answer when the receiver is not to run."""

    action: Action
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Run:
    """:func:`judge`'s answer when the receiver runs (with the envelope's arguments, event)."""

    spec: DurableReceiver
    envelope: Envelope
    event: Event


_SKIP = Verdict(Action.SKIP)


def judge(lane: Lane, message: Message, done: set[str], *, me: str) -> Verdict | Run:
    """Say what to do with ``message`` of ``lane``; ``done``: the events that ran in the group.

    Args:
        lane: The lane the entry was read from.
        message: The entry.
        done: Events marked done in the group (of the entry's batch, at least).
        me: The consumer reading it (for the log line of an entry left for another worker).
    """
    if message.event_id in done:
        return _SKIP
    try:
        envelope = open_envelope(message.body)
        event_id = event_uuid(message.event_id)
    except ValueError as exc:
        return Verdict(Action.BURY, f"unreadable entry: {exc}")
    spec = lane.receivers.get(envelope.signal)
    if spec is None or spec.delivery != lane.mode:
        return _not_here(lane, message, envelope, spec, me)
    if message.deliveries > spec.max_attempts:
        return Verdict(
            Action.BURY,
            f"handed out {message.deliveries} times without finishing (max_attempts "
            f"{spec.max_attempts}): its workers died, or it ran longer than the claim idle "
            "time without a keeper",
        )
    if envelope.format > FORMAT_VERSION:
        return Verdict(
            Action.BURY,
            f"stored in format {envelope.format}; this release of tidings reads formats up to "
            f"{FORMAT_VERSION}",
        )
    event = Event(
        id=event_id,
        attempt=message.deliveries,
        sent_at=envelope.sent_at,
        signal=envelope.signal,
        receiver=envelope.receiver,
    )
    return Run(spec, envelope, event)


def _not_here(
    lane: Lane, message: Message, envelope: Envelope, spec: DurableReceiver | None, me: str
) -> Verdict:
    if spec is not None:
        # The receiver name is connected with the other remote mode for this signal: that
        # mode's groups run it; this group has nothing to do.
        return _SKIP
    # A signal this worker does not know (a newer release elsewhere?): leave it pending for a
    # worker that knows it; it becomes a dead letter after max_attempts.
    if message.deliveries > lane.max_attempts:
        return Verdict(
            Action.BURY,
            f"no worker that was handed it {message.deliveries} times knows signal "
            f"{envelope.signal!r} for receiver {envelope.receiver!r}",
        )
    logger.warning(
        "consumer %s of %s: no receiver %r of signal %r here; entry %s left for another worker",
        me,
        lane.group,
        envelope.receiver,
        envelope.signal,
        message.id,
    )
    return Verdict(Action.LEAVE)


def after_failure(
    spec: DurableReceiver, message: Message, exc: BaseException, *, retry_after: float
) -> str | None:
    """Log an attempt that raised; return the dead-letter reason on its last attempt, else None.

    Args:
        spec: The receiver.
        message: Its entry.
        exc: What it raised.
        retry_after: Seconds before it is retried (the claim idle time), for the log line.
    """
    error = f"{type(exc).__qualname__}: {exc}"
    if message.deliveries >= spec.max_attempts:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        logger.error(
            "%s receiver %s failed on attempt %d (event %s): %s; moved to the dead letters",
            spec.delivery,
            spec.name,
            message.deliveries,
            message.event_id,
            error,
        )
        return f"{error}\n{text}"
    logger.warning(
        "%s receiver %s failed on attempt %d (event %s): %s; retried after %.1f s",
        spec.delivery,
        spec.name,
        message.deliveries,
        message.event_id,
        error,
        retry_after,
    )
    return None


def log_buried(lane: Lane, message: Message, reason: str) -> None:
    """Log that ``message`` moves to the dead letters of ``lane``'s group."""
    logger.error(
        "entry %s of %s (event %s) moved to the dead letters of %s: %s",
        message.id,
        message.topic,
        message.event_id,
        lane.group,
        reason,
    )


def log_unfinished(lane: Lane, me: str, message: Message, exc: BaseException) -> None:
    """Log a round trip that failed while handling ``message``: it stays pending, claimed again."""
    logger.warning(
        "consumer %s of %s: %s; entry %s is retried after the claim idle time",
        me,
        lane.group,
        exc,
        message.id,
    )
