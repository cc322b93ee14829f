"""Operating an outbox: its counts, the dead letters, putting them back, purging them."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select

from tidings._errors import TidingsValueError
from tidings.outbox._records import utcnow
from tidings.outbox._store import Store

__all__ = ["DeadLetter", "OutboxStatus", "dead_letters", "purge", "retry", "status"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A delivery in the dead letters."""

    id: int
    event_id: uuid.UUID
    signal: str
    receiver: str
    attempts: int
    sent_at: datetime.datetime
    failed_at: datetime.datetime
    error: str
    traceback: str
    payload: str
    delivery: str = "durable"


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    """Counts of an outbox at one moment."""

    pending: int
    in_flight: int
    dead: int
    oldest_pending: datetime.datetime | None

    def oldest_age(self, now: datetime.datetime | None = None) -> float | None:
        """Seconds since the oldest pending delivery was sent, or None if none is pending."""
        if self.oldest_pending is None:
            return None
        return ((now or utcnow()) - self.oldest_pending).total_seconds()


def status(store: Store) -> OutboxStatus:
    """Count pending, in-flight and dead deliveries."""
    table = store.tables.pending
    now = utcnow()
    leased = table.c.locked_until >= now
    with store.engine.connect() as conn:
        pending, in_flight, oldest = conn.execute(
            select(
                func.count().filter(~leased | table.c.locked_until.is_(None)),
                func.count().filter(leased),
                func.min(table.c.sent_at),
            )
        ).one()
        dead = conn.execute(select(func.count()).select_from(store.tables.dead)).scalar_one()
    return OutboxStatus(int(pending), int(in_flight), int(dead), oldest)


def dead_letters(store: Store, limit: int | None = None) -> list[DeadLetter]:
    """The dead letters, oldest failure first."""
    table = store.tables.dead
    query = select(
        table.c.id,
        table.c.event_id,
        table.c.signal,
        table.c.receiver,
        table.c.attempts,
        table.c.sent_at,
        table.c.failed_at,
        table.c.error,
        table.c.traceback,
        table.c.payload,
        table.c.delivery,
    ).order_by(table.c.failed_at, table.c.id)
    if limit is not None:
        query = query.limit(limit)
    with store.engine.connect() as conn:
        return [DeadLetter(**row) for row in conn.execute(query).mappings()]


def retry(store: Store, ids: Sequence[int] | None) -> int:
    """Put dead letters back as pending deliveries with no attempts counted.

    Args:
        store: The outbox's statements.
        ids: The dead letters' ids, or None for all of them.

    Returns:
        How many were put back.
    """
    dead, pending = store.tables.dead, store.tables.pending
    now = utcnow()
    with store.transaction() as conn:
        query = select(dead)
        if ids is not None:
            query = query.where(dead.c.id.in_(ids))
        rows = list(conn.execute(query).mappings())
        if not rows:
            return 0
        conn.execute(
            insert(pending),
            [
                {
                    "event_id": row["event_id"],
                    "format": row["format"],
                    "signal": row["signal"],
                    "receiver": row["receiver"],
                    "delivery": row["delivery"],
                    "order_key": row["order_key"],
                    "payload": row["payload"],
                    "sent_at": row["sent_at"],
                    "available_at": now,
                    "attempts": 0,
                    "last_error": row["error"],
                }
                for row in rows
            ],
        )
        conn.execute(delete(dead).where(dead.c.id.in_([row["id"] for row in rows])))
    return len(rows)


def purge(store: Store, older_than: float) -> int:
    """Delete the dead letters that failed more than ``older_than`` seconds ago.

    Args:
        store: The outbox's statements.
        older_than: Seconds.

    Returns:
        How many were deleted.
    """
    dead = store.tables.dead
    try:
        cutoff = utcnow() - datetime.timedelta(seconds=older_than)
    except OverflowError:
        raise TidingsValueError(
            f"purge(older_than={older_than!r}) reaches back before the year 1"
        ) from None
    with store.transaction() as conn:
        return conn.execute(delete(dead).where(dead.c.failed_at < cutoff)).rowcount
