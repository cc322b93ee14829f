"""What a consumer reads: lanes (one receiver's stream as one group reads it), and its stats."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tidings._delivery import Delivery
from tidings._errors import TidingsValueError
from tidings.outbox._receivers import DurableReceiver
from tidings.outbox._remote import REMOTE_MODES, group_name, topic_name

__all__ = ["ConsumerStats", "Lane", "describe_lanes", "lanes_for"]


@dataclass
class ConsumerStats:
    """What a consumer did so far (all its threads together).

    Attributes:
        done: Entries whose receiver returned.
        skipped: Entries skipped because their event already ran in the group.
        failed: Attempts that raised and will be retried.
        dead: Entries moved to the dead letters.
        claimed: Entries taken over from idle consumers.
        started: ``time.monotonic()`` when the consumer started.
    """

    done: int = 0
    skipped: int = 0
    failed: int = 0
    dead: int = 0
    claimed: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class Lane:
    """One receiver's stream as one group reads it.

    Attributes:
        topic: The stream.
        group: The consumer group.
        mode: ``Delivery.QUEUE`` or ``Delivery.BROADCAST``.
        receivers: The receivers with this stable name, by signal name (one receiver name
            may be connected to several signals: their entries share the stream).
    """

    topic: str
    group: str
    mode: Delivery
    receivers: dict[str, DurableReceiver]

    @property
    def receiver(self) -> str:
        """The receivers' stable name."""
        return next(iter(self.receivers.values())).name

    @property
    def max_attempts(self) -> int:
        """The smallest ``max_attempts`` of the lane's receivers."""
        return min(spec.max_attempts for spec in self.receivers.values())


def lanes_for(receivers: Iterable[DurableReceiver], node: str) -> list[Lane]:
    """Group queue and broadcast receivers into lanes (one per stream and group).

    Raises:
        ValueError: A receiver is neither queue nor broadcast.
    """
    found: dict[tuple[str, str], Lane] = {}
    for spec in receivers:
        mode = Delivery(spec.delivery)
        if mode not in REMOTE_MODES:
            raise TidingsValueError(
                f"receiver {spec.name!r} of {spec.signal!r} is delivered {mode.value!r}: a "
                "consumer runs queue and broadcast receivers only"
            )
        topic = topic_name(spec.name)
        group = group_name(mode, spec.name, node)
        lane = found.setdefault((topic, group), Lane(topic, group, mode, {}))
        lane.receivers[spec.key[0]] = spec
    return sorted(found.values(), key=lambda lane: (lane.topic, lane.group))


def describe_lanes(lanes: Sequence[Lane]) -> str:
    """A one-line summary of what a consumer reads, for the worker's first line."""
    return ", ".join(f"{lane.group} ({lane.mode.value})" for lane in lanes) or "nothing"
