"""What a claim hands the relay and what the relay hands back: the claimed row, the outcome.

These records are shared by the store (:mod:`tidings.outbox._store`), the relay and the actions
it runs (the publisher of queue and broadcast rows), so they live apart from the statements.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = ["Action", "Claimed", "Failure", "Outcome", "Postpone", "Taken", "utcnow"]


def utcnow() -> datetime.datetime:
    """The current time as a naive UTC ``datetime``, the outbox tables' convention."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class Claimed(NamedTuple):
    """A pending delivery a worker holds the lease of.

    A named tuple rather than a frozen dataclass: a relay builds one per delivery it claims,
    and a frozen dataclass's ``__init__`` (an ``object.__setattr__`` call per field) cost
    eight times as much, a measurable part of a trivial receiver's throughput.
    """

    id: int
    event_id: uuid.UUID
    format: int
    signal: str
    receiver: str
    delivery: str
    order_key: str | None
    payload: str
    sent_at: datetime.datetime
    attempts: int


@dataclass(frozen=True, slots=True)
class Failure:
    """A delivery that failed: retried after ``delay`` seconds, or dead if ``dead``."""

    row: Claimed
    error: str
    traceback: str
    dead: bool
    delay: float


@dataclass(slots=True)
class Outcome:
    """What became of a claimed batch.

    Attributes:
        done: Deliveries whose receiver returned: deleted.
        failures: Deliveries whose receiver raised: retried later or moved to the dead letters.
        released: Deliveries that were not run (the worker stops): due again at once, the
            attempt not counted.
        postponed: Deliveries not run now (unknown receiver), due again after the delay, the
            attempt not counted.
    """

    done: list[int] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    released: list[Claimed] = field(default_factory=list)
    postponed: list[tuple[Claimed, float]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.done or self.failures or self.released or self.postponed)

    def __len__(self) -> int:
        return len(self.done) + len(self.failures) + len(self.released) + len(self.postponed)


@dataclass(slots=True)
class Taken:
    """Deliveries :meth:`Store.lock` took: the rows, and what putting one back restores.

    Attributes:
        rows: The deliveries, oldest first.
        kept: Each one's ``(available_at, last_error)`` as stored, by id.
    """

    rows: list[Claimed] = field(default_factory=list)
    kept: dict[int, tuple[datetime.datetime, str | None]] = field(default_factory=dict)


#: What a relay does with a claimed delivery of a mode other than ``durable``: returns (the row
#: is done), raises an ``Exception`` (a failed attempt) or returns an awaitable to await first.
Action = Callable[[Claimed], Any]


class Postpone(Exception):
    """Raised by an action to leave its row for ``delay`` seconds, the attempt not counted.

    Args:
        delay: Seconds before the row is due again.
        why: What went wrong, for the logs.
    """

    def __init__(self, delay: float, why: str = "") -> None:
        super().__init__(why or f"postponed by {delay:.1f} s")
        self.delay = delay
