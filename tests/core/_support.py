"""Helpers shared by the core dispatcher tests: sender kinds and recording receivers."""

from __future__ import annotations

import asyncio
import gc
import threading
import tracemalloc
from collections.abc import Callable
from typing import Any

from tidings import TidingsError

JOIN_TIMEOUT = 30.0

SENDER_KINDS = ["none", "class", "instance", "bound-method", "object", "int", "list", "dict"]


class Thing:
    """A plain, weakly referenceable object whose method can be a sender or a receiver."""

    def method(self, **kwargs: Any) -> str:
        """Receive a signal and answer with the method's name."""
        return "method"


class Bulky:
    """A weakly referenceable sender of an unusual size.

    CPython's allocator hands a freed block back to the next allocation of the same size
    class; few other objects share this one, so a new ``Bulky`` almost always takes the
    address of the last one that died, which is how tests reproduce ``id()`` reuse.
    """

    __slots__ = (*(f"slot{i}" for i in range(45)), "__weakref__")

    def method(self, **kwargs: Any) -> str:
        """Receive a signal and answer with the method's name."""
        return "method"


class Slotted:
    """An object that cannot be weakly referenced (``__slots__`` without ``__weakref__``)."""

    __slots__ = ("name",)

    def __init__(self, name: str = "slotted") -> None:
        self.name = name

    def __call__(self, **kwargs: Any) -> str:
        """Receive a signal and answer with this receiver's name."""
        return self.name


def make_sender(kind: str) -> Any:
    """Return a new sender of the given kind (see ``SENDER_KINDS``)."""
    if kind == "none":
        return None
    if kind == "class":
        return type("SenderClass", (), {})
    if kind == "instance":
        return Thing()
    if kind == "bound-method":
        return Thing().method
    if kind == "object":
        return object()
    if kind == "int":
        # Built at run time so that it is a fresh object, not a cached small int.
        return int("1234567")
    if kind == "list":
        return [1, 2]
    if kind == "dict":
        return {"a": 1}
    raise ValueError(f"unknown sender kind {kind!r}")


class Recorder:
    """Makes receivers that append their names to one shared call log.

    The recorder keeps every receiver it made alive (weakly connected receivers would
    otherwise vanish at once); :meth:`forget` drops one so that it can die.
    """

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.kwargs: list[dict[str, Any]] = []
        self.receivers: dict[str, Any] = {}

    def sync(self, name: str, *, error: BaseException | None = None) -> Any:
        """A sync receiver that logs ``name``, then raises ``error`` or returns ``name``."""

        def receiver(**kwargs: Any) -> str:
            self.calls.append(name)
            self.kwargs.append(kwargs)
            if error is not None:
                raise error
            return f"{name}-result"

        receiver.__name__ = receiver.__qualname__ = name
        self.receivers[name] = receiver
        return receiver

    def asynchronous(self, name: str, *, error: BaseException | None = None) -> Any:
        """An async receiver that logs ``name``, yields once, then raises or returns."""

        async def receiver(**kwargs: Any) -> str:
            self.calls.append(name)
            self.kwargs.append(kwargs)
            await asyncio.sleep(0)
            if error is not None:
                raise error
            return f"{name}-result"

        receiver.__name__ = receiver.__qualname__ = name
        self.receivers[name] = receiver
        return receiver

    def forget(self, name: str) -> None:
        """Drop the recorder's reference to the receiver named ``name``."""
        self.receivers.pop(name, None)


def names(responses: list[tuple[Any, Any]]) -> list[tuple[str, Any]]:
    """Map ``[(receiver, response)]`` to ``[(receiver name, response)]`` for comparisons."""
    return [(getattr(r, "__name__", repr(r)), value) for r, value in responses]


def dispatch(signal: Any, method: str, sender: Any, **named: Any) -> list[tuple[Any, Any]]:
    """Call ``signal.<method>(sender, **named)``, running the async methods to completion."""
    if method.startswith("a"):
        return asyncio.run(getattr(signal, method)(sender, **named))
    return getattr(signal, method)(sender, **named)  # type: ignore[no-any-return]


def retained_by_second_window(cycle: Callable[[], object], cycles: int) -> int:
    """Run ``cycle`` in a warm-up and two windows of ``cycles``; return the second's growth."""
    for _ in range(min(cycles, 300)):
        cycle()
    gc.collect()
    tracemalloc.start()
    try:
        for _ in range(cycles):
            cycle()
        gc.collect()
        first = tracemalloc.get_traced_memory()[0]
        for _ in range(cycles):
            cycle()
        gc.collect()
        second = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return second - first


def run_threads(workers: list[Callable[[], None]], *, names: list[str] | None = None) -> None:
    """Start ``workers`` together behind a barrier; re-raise the first error; never hang.

    Args:
        workers: What each thread runs.
        names: The threads' names, one per worker (``threading``'s defaults without it).
    """
    barrier = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def wrap(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                barrier.wait(timeout=JOIN_TIMEOUT)
                work()
            except BaseException as error:
                errors.append(error)

        return run

    labels: list[str | None] = [None] * len(workers) if names is None else list(names)
    threads = [
        threading.Thread(target=wrap(work), daemon=True, name=label)
        for work, label in zip(workers, labels, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck: deadlock?"
    if errors:
        raise errors[0]


def assert_refusal(error: BaseException, builtin: type[BaseException], *names: str) -> None:
    """``error`` is a ``TidingsError`` and a ``builtin``, and its message holds every name."""
    message = str(error)
    missing = [name for name in names if name not in message]
    assert missing == [], f"{missing} not in {message!r}"
    assert isinstance(error, builtin)
    assert isinstance(error, TidingsError)
