"""The async receivers of one send run as Django 6.1's ``TaskGroup`` runs them.

They share one copy of the caller's context, whose changes are written back; a failure cancels
and awaits the others before it propagates; cancelling the send cancels them all. Where the
installed Django is 6.x, it is run on the same scenario as the oracle.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from typing import Any

import django
import django.dispatch
import pytest

import tidings

DJANGO_6 = django.VERSION >= (6, 0)
# Python 3.10 cannot share one context between tasks (no create_task(context=...)).
SHARED = sys.version_info >= (3, 11)

level: contextvars.ContextVar[int] = contextvars.ContextVar("taskgroup_level", default=0)


class _Incrementer:
    """A receiver that increments ``level`` and records the value it set."""

    def __init__(self, asynchronous: bool) -> None:
        self.values: list[int] = []
        self.asynchronous = asynchronous

    def bump(self) -> int:
        """Increment ``level``; return and record the new value."""
        level.set(level.get() + 1)
        self.values.append(level.get())
        return level.get()


def _receivers(kinds: str) -> list[Any]:
    """Two incrementing receivers: ``"sync"``, ``"async"`` or ``"mixed"`` (sync, then async)."""
    made = []
    for index in range(2):
        asynchronous = kinds == "async" or (kinds == "mixed" and index == 1)
        inc = _Incrementer(asynchronous)
        if asynchronous:

            async def receiver(inc: _Incrementer = inc, **kwargs: Any) -> int:
                await asyncio.sleep(0)
                return inc.bump()

        else:

            def receiver(inc: _Incrementer = inc, **kwargs: Any) -> int:  # type: ignore[misc]
                return inc.bump()

        receiver.inc = inc  # type: ignore[attr-defined]
        made.append(receiver)
    return made


def _context_outcome(module: Any, method: str, kinds: str) -> tuple[list[int], int]:
    """Send through a fresh signal of ``module`` with ``level`` at 1; return values and level."""
    receivers = _receivers(kinds)
    signal = module.Signal()
    for r in receivers:
        signal.connect(r)

    async def in_loop() -> int:
        level.set(1)
        await getattr(signal, method)(None)
        return level.get()

    def in_thread() -> int:
        level.set(1)
        getattr(signal, method)(None)
        return level.get()

    run = (lambda: asyncio.run(in_loop())) if method.startswith("a") else in_thread
    final = contextvars.Context().run(run)
    return sorted(v for r in receivers for v in r.inc.values), final


@pytest.mark.parametrize("kinds", ["sync", "async", "mixed"])
@pytest.mark.parametrize("method", ["send", "send_robust", "asend", "asend_robust"])
def test_receivers_share_context_changes(method: str, kinds: str) -> None:
    """Two receivers incrementing a variable from 1 see 2 and 3, and the caller then sees 3."""
    expected = ([2, 3], 3)
    if kinds == "async" and not SHARED:
        expected = ([2, 2], 2)  # each task's own copy, written back in connection order
    assert _context_outcome(tidings, method, kinds) == expected
    if DJANGO_6:
        assert _context_outcome(django.dispatch, method, kinds) == ([2, 3], 3)


def _slow_and_failing(log: list[str]) -> list[Any]:
    """A slow async receiver, then one that fails after it has started."""

    async def slow(**kwargs: Any) -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            log.append("slow-cancelled")
            raise
        log.append("slow-finished")

    async def failing(**kwargs: Any) -> None:
        await asyncio.sleep(0)
        raise LookupError("failed")

    return [slow, failing]


def test_send_failure_cancels_and_awaits_the_others() -> None:
    """In ``send()``, a failing async receiver cancels the others before the error propagates."""
    log: list[str] = []
    signal = tidings.Signal()
    receivers = _slow_and_failing(log)
    for r in receivers:
        signal.connect(r)
    with pytest.raises(LookupError, match="failed"):
        signal.send(None)
    assert log == ["slow-cancelled"]


def test_cancelled_asend_cancels_and_awaits_its_receivers() -> None:
    """Cancelling ``asend()`` cancels every async receiver and waits for them first."""
    log: list[str] = []
    started = asyncio.Event()

    async def waiting(**kwargs: Any) -> None:
        started.set()
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            await asyncio.sleep(0)  # cleanup that itself awaits
            log.append("receiver-cancelled")
            raise

    signal = tidings.Signal()
    signal.connect(waiting)

    async def main() -> None:
        task = asyncio.ensure_future(signal.asend(None))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        log.append("asend-cancelled")

    asyncio.run(main())
    assert log == ["receiver-cancelled", "asend-cancelled"]


@pytest.mark.parametrize("method", ["send_robust", "asend_robust"])
def test_robust_failure_cancels_nothing(method: str) -> None:
    """In the robust sends a failing async receiver becomes a response; the others finish."""
    finished: list[str] = []

    async def slow(**kwargs: Any) -> str:
        await asyncio.sleep(0.01)
        finished.append("slow")
        return "slow"

    async def failing(**kwargs: Any) -> None:
        raise LookupError("failed")

    signal = tidings.Signal()
    signal.connect(slow)
    signal.connect(failing)
    call = getattr(signal, method)
    responses = asyncio.run(call(None)) if method.startswith("a") else call(None)
    assert [type(value).__name__ for _, value in responses] == ["str", "LookupError"]
    assert finished == ["slow"]
