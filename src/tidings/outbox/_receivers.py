"""Durable receivers as a worker knows them: by the stable names of the signal and receiver."""

from __future__ import annotations

import asyncio
import datetime
import functools
import inspect
import random
import threading
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from tidings._dispatch import Signal
from tidings._errors import NoStableNameError, TidingsValueError
from tidings.outbox._codec import decode

__all__ = [
    "DurableReceiver",
    "Event",
    "Unreadable",
    "arun_delivery",
    "backoff_delay",
    "receiver_name",
    "registered",
    "run_delivery",
    "within",
]

#: Retry policy defaults: five attempts, backoff from 1 s doubling up to 5 min.
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_BACKOFF = 1.0
DEFAULT_BACKOFF_MAX = 300.0
#: The longest backoff a receiver may ask for: a year, in seconds.
MAX_BACKOFF = 366 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Event:
    """What a durable receiver is told about the delivery it is running, as ``event=``.

    Attributes:
        id: The delivery's unique id, the same on every attempt: the idempotency key. Each
            durable receiver of a send has its own (``Outbox.write()`` gives the receivers it
            names one id between them, told apart by ``receiver``).
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
        delivery: The mode it was connected with (``durable``; ``queue`` and ``broadcast``
            receivers are stored the same way and published by the relay).
        ordered: False, or what orders its deliveries: ``True`` (per model instance for a
            send with an ``instance``, else all of them), or the name of a send argument whose
            value is the key. See docs/durable.md, "Order".
    """

    signal: Signal
    name: str
    func: Callable[..., Any]
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff: float = DEFAULT_BACKOFF
    backoff_max: float = DEFAULT_BACKOFF_MAX
    timeout: float | None = None
    delivery: str = "durable"
    ordered: bool | str = False
    # Asked for every delivery a relay runs: worked out once.
    _async: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_async", inspect.iscoroutinefunction(self.func))
        where = f"durable receiver {self.name!r} of {self.signal!r}"
        if not self.signal.name:
            raise NoStableNameError(
                f"{where}: the signal has no name, and a worker finds a signal by its name; "
                "give it a stable one, Signal(name='app.event')"
            )
        if type(self.max_attempts) is not int or self.max_attempts < 1:
            raise TidingsValueError(
                f"{where}: max_attempts must be an int of at least 1, got {self.max_attempts!r}"
            )
        if not all(type(v) in (int, float) for v in (self.backoff, self.backoff_max)) or not (
            0 <= self.backoff <= self.backoff_max <= MAX_BACKOFF
        ):
            raise TidingsValueError(
                f"{where}: need numbers 0 <= backoff <= backoff_max <= {MAX_BACKOFF:.0f} (a "
                f"year), got backoff={self.backoff!r} and backoff_max={self.backoff_max!r}"
            )
        if not (type(self.ordered) is bool or (isinstance(self.ordered, str) and self.ordered)):
            raise TidingsValueError(
                f"{where}: ordered= takes True, False or the name of a send argument, got "
                f"{self.ordered!r}"
            )
        if self.timeout is not None and (
            type(self.timeout) not in (int, float) or not self.timeout > 0
        ):
            raise TidingsValueError(
                f"{where}: timeout must be a positive number of seconds or None, got "
                f"{self.timeout!r}"
            )

    @property
    def key(self) -> tuple[str, str]:
        """``(signal name, receiver name)``, how stored deliveries name it."""
        return (self.signal.name or "", self.name)

    @property
    def is_async(self) -> bool:
        """Whether the receiver is an ``async def`` function."""
        return self._async

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retrying after failed attempt number ``attempt``.

        Exponential with "equal jitter": half the bound, plus a random part of the other half.
        """
        return backoff_delay(attempt, self.backoff, self.backoff_max)


def backoff_delay(attempt: int, backoff: float, backoff_max: float) -> float:
    """Seconds before retrying after failed attempt ``attempt`` (see DurableReceiver.delay)."""
    bound = min(backoff_max, backoff * 2.0 ** min(attempt - 1, 64))  # 2**64 s: past any bound
    return bound / 2 + random.uniform(0, bound / 2)


_lock = threading.Lock()
_registry: dict[tuple[str, str], DurableReceiver] = {}


def register(spec: DurableReceiver) -> None:
    """Add ``spec`` to the receivers every worker of this process knows.

    A receiver registered again under its own name, defined at the same place (the same
    ``module.qualname``: a module reloaded, a test run twice), replaces the previous one.

    Raises:
        ValueError: Another receiver has the same name on the same signal.
    """
    with _lock:
        known = _registry.get(spec.key)
        if known is not None and known.func is not spec.func and not _same_code(known, spec):
            raise TidingsValueError(
                f"two durable receivers of {spec.signal!r} are named {spec.name!r}: "
                f"{known.func!r} and {spec.func!r}; give one of them name='...'"
            )
        _registry[spec.key] = spec


def _same_code(a: DurableReceiver, b: DurableReceiver) -> bool:
    def where(func: Any) -> tuple[object, object] | None:
        func = getattr(func, "__func__", func)
        module = getattr(func, "__module__", None)
        qualname = getattr(func, "__qualname__", None)
        return None if module is None or qualname is None else (module, qualname)

    place = where(a.func)
    return place is not None and place == where(b.func)


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


class Unreadable(Exception):
    """A stored delivery this worker cannot run at all: it goes to the dead letters at once."""


def run_delivery(
    spec: DurableReceiver,
    payload: str,
    event: Event,
    open_session: Callable[[], Session],
    wait: Callable[[Coroutine[Any, Any, Any]], None],
) -> None:
    """Call ``spec``'s receiver with the arguments stored in ``payload`` rebuilt, and ``event``.

    What the relay (durable rows) and the consumer (queue and broadcast entries) both do with
    a delivery. Model arguments are loaded in a Session from ``open_session``, closed once the
    receiver returned or raised; an ``async def`` receiver's coroutine, limited to its
    ``timeout`` (:func:`within`), is handed to ``wait(coroutine)``, which runs it to its end.

    Raises:
        Unreadable: The stored arguments cannot be rebuilt.
    """
    kwargs, session = _rebuild(payload, open_session)
    try:
        if spec.is_async:
            called = spec.func(signal=spec.signal, event=event, **kwargs)
            wait(within(called, spec.timeout, _what(spec)))
        else:
            spec.func(signal=spec.signal, event=event, **kwargs)
    finally:
        if session is not None:
            session.close()


async def arun_delivery(
    spec: DurableReceiver, payload: str, event: Event, open_session: Callable[[], Session]
) -> None:
    """:func:`run_delivery` for an event loop, which it never blocks.

    The arguments are rebuilt in a thread (loading a model is a blocking query); an
    ``async def`` receiver is awaited for at most its ``timeout``; a plain one runs in a thread
    of the loop's default executor (without a time limit, as on a worker thread).

    Raises:
        Unreadable: The stored arguments cannot be rebuilt.
    """
    kwargs, session = await asyncio.to_thread(_rebuild, payload, open_session)
    try:
        if spec.is_async:
            called = spec.func(signal=spec.signal, event=event, **kwargs)
            await within(called, spec.timeout, _what(spec))
        else:
            call = functools.partial(spec.func, signal=spec.signal, event=event, **kwargs)
            await asyncio.to_thread(call)
    finally:
        if session is not None:
            session.close()


async def within(awaitable: Awaitable[Any], timeout: float | None, what: str) -> Any:
    """Await ``awaitable`` for at most ``timeout`` seconds (None: as long as it takes).

    Raises:
        asyncio.TimeoutError: The time ran out (``awaitable`` was cancelled); the message
            names ``what`` and the timeout. One that ``awaitable`` raised passes as it is.
    """
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError as exc:
        # wait_for's own comes from the cancellation it made.
        if timeout is None or not isinstance(exc.__cause__, asyncio.CancelledError):
            raise
        raise asyncio.TimeoutError(
            f"{what} did not finish within its timeout of {timeout:g} s (it was cancelled)"
        ) from None


def _what(spec: DurableReceiver) -> str:
    return f"async receiver {spec.name} of {spec.signal.name}"


def _rebuild(
    payload: str, open_session: Callable[[], Session]
) -> tuple[dict[str, Any], Session | None]:
    try:
        return decode(payload, open_session)
    except (ValueError, KeyError, TypeError, ImportError, Unreadable) as exc:
        raise Unreadable(f"the stored arguments cannot be read: {exc!r}") from exc
