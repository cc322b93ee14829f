"""Durable receivers as a worker knows them: by the stable names of the signal and receiver."""

from __future__ import annotations

import datetime
import inspect
import random
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tidings._dispatch import Signal
from tidings._errors import TidingsValueError

__all__ = [
    "DurableReceiver",
    "Event",
    "receiver_name",
    "registered",
]

#: Retry policy defaults: five attempts, backoff from 1 s doubling up to 5 min.
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_BACKOFF = 1.0
DEFAULT_BACKOFF_MAX = 300.0


@dataclass(frozen=True, slots=True)
class Event:
    """What a durable receiver is told about the delivery it is running, as ``event=``.

    Attributes:
        id: The event's unique id, the same on every attempt and for every receiver of the same
            send: the idempotency key.
        attempt: 1 on the first attempt, 2 on the first retry, ...
        sent_at: When the send happened (aware, UTC).
        signal: The signal's stable name.
        receiver: The receiver's stable name.
    """

    id: uuid.UUID
    attempt: int
    sent_at: datetime.datetime
    signal: str
    receiver: str


def receiver_name(func: Callable[..., Any]) -> str | None:
    """The stable name of a receiver: its dotted ``module.qualname``, or None if it has none.

    Lambdas, functions defined inside functions and bound methods of instances have no stable
    name: a worker process could not find them again.
    """
    if inspect.ismethod(func):
        owner = func.__self__
        if not isinstance(owner, type):
            return None
        func = func.__func__
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    return f"{module}.{qualname}"


@dataclass(frozen=True, slots=True)
class DurableReceiver:
    """A receiver a worker can run, with its retry policy.

    Attributes:
        signal: The signal it is connected to; its ``name`` is the signal's stable name.
        name: The receiver's stable name.
        func: The receiver.
        max_attempts: Attempts before the delivery moves to the dead letters.
        backoff: Delay before the first retry, in seconds; it doubles on every retry.
        backoff_max: Upper bound of the delay, in seconds.
        timeout: For an ``async def`` receiver, seconds an attempt may take (None: no limit).
    """

    signal: Signal
    name: str
    func: Callable[..., Any]
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff: float = DEFAULT_BACKOFF
    backoff_max: float = DEFAULT_BACKOFF_MAX
    timeout: float | None = None

    def __post_init__(self) -> None:
        if not self.signal.name:
            raise TidingsValueError(
                f"durable receiver {self.name!r} is connected to an unnamed signal {self.signal!r}:"
                " give the signal a stable name, Signal(name='app.event')"
            )
        if self.max_attempts < 1:
            raise TidingsValueError(
                f"durable receiver {self.name!r}: max_attempts must be at least 1"
            )
        if self.backoff < 0 or self.backoff_max < self.backoff:
            raise TidingsValueError(
                f"durable receiver {self.name!r}: need 0 <= backoff <= backoff_max, got "
                f"{self.backoff} and {self.backoff_max}"
            )
        if self.timeout is not None and self.timeout <= 0:
            raise TidingsValueError(f"durable receiver {self.name!r}: timeout must be positive")

    @property
    def key(self) -> tuple[str, str]:
        """``(signal name, receiver name)``, how stored deliveries name it."""
        return (self.signal.name or "", self.name)

    @property
    def is_async(self) -> bool:
        """Whether the receiver is an ``async def`` function."""
        return inspect.iscoroutinefunction(self.func)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retrying after failed attempt number ``attempt``.

        Exponential with "equal jitter": half the bound, plus a random part of the other half.
        """
        bound = min(self.backoff_max, self.backoff * 2.0 ** (attempt - 1))
        return bound / 2 + random.uniform(0, bound / 2)


_lock = threading.Lock()
_registry: dict[tuple[str, str], DurableReceiver] = {}


def register(spec: DurableReceiver) -> None:
    """Add ``spec`` to the receivers every worker of this process knows.

    Raises:
        ValueError: Another receiver has the same name on the same signal.
    """
    with _lock:
        known = _registry.get(spec.key)
        if known is not None and known.func is not spec.func:
            raise TidingsValueError(
                f"two durable receivers of {spec.signal!r} are named {spec.name!r}: "
                f"{known.func!r} and {spec.func!r}; give one of them name='...'"
            )
        _registry[spec.key] = spec


def unregister(key: tuple[str, str]) -> None:
    """Forget the receiver stored under ``key``, if any."""
    with _lock:
        _registry.pop(key, None)


def registered() -> Mapping[tuple[str, str], DurableReceiver]:
    """A snapshot of the receivers every worker of this process knows."""
    with _lock:
        return dict(_registry)


def iter_registered() -> Iterator[DurableReceiver]:
    """The registered receivers, sorted by signal and receiver name."""
    return iter(sorted(registered().values(), key=lambda spec: spec.key))
