"""Connect, send and disconnect cycles leave nothing behind (tracemalloc).

Each scenario runs its cycle in two equal windows after a warm-up and compares the memory still
allocated after each: one-time costs (caches, free lists, tracemalloc's own bookkeeping) land
in the first window, so what the second window adds is what every cycle leaks. The short
versions run a few hundred cycles; the ``stress`` versions 100,000.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

import django
import django.dispatch
import pytest

from tests.core._support import Thing, retained_by_second_window
from tidings import Signal

# Cycles per window (600 and 100,000 in all): even 300 leaked objects of the smallest size
# (16 bytes) exceed SLACK.
SHORT, LONG = 300, 50_000
DJANGO_6 = django.VERSION >= (6, 0)


def _handler(**kwargs: Any) -> str:
    """A long-lived module-level receiver."""
    return "handled"


async def _async_handler(**kwargs: Any) -> str:
    """A long-lived module-level async receiver."""
    return "handled"


def _weak_function_cycle() -> Callable[[], object]:
    signal = Signal()

    def cycle() -> object:
        signal.connect(_handler)
        signal.send(None)
        return signal.disconnect(_handler)

    return cycle


def _dying_sender_cycle() -> Callable[[], object]:
    """A new receiver object and a new sender per cycle, never disconnected: both just die."""
    signal = Signal()
    signal.connect(_handler)  # keeps the signal's plans non-trivial

    def cycle() -> object:
        owner, sender = Thing(), Thing()
        signal.connect(owner.method, sender=sender)
        return signal.send(sender)

    return cycle


def _strong_uid_cycle() -> Callable[[], object]:
    signal = Signal(use_caching=True)

    def cycle() -> object:
        sender = object()
        signal.connect(lambda **kwargs: None, sender=sender, weak=False, dispatch_uid="uid")
        signal.send_robust(sender)
        return signal.disconnect(sender=sender, dispatch_uid="uid")

    return cycle


def _mixed_send_cycle() -> Callable[[], object]:
    """A sync and an async receiver, sent from sync code (a private event loop per send)."""
    signal = Signal()

    def cycle() -> object:
        signal.connect(_handler)
        signal.connect(_async_handler)
        signal.send(None)
        signal.disconnect(_async_handler)
        return signal.disconnect(_handler)

    return cycle


SCENARIOS = {
    "weak-function": (_weak_function_cycle, 1),
    "dying-sender": (_dying_sender_cycle, 1),
    "strong-uid": (_strong_uid_cycle, 1),
    # A new event loop per send costs ~100 times a plain send: fewer cycles.
    "mixed-send": (_mixed_send_cycle, 3),
}
# Bytes a window may add without a per-cycle leak: far below one object per cycle.
SLACK = 2_048


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_cycles_leave_no_growth(scenario: str) -> None:
    """A few hundred cycles of connect, send and disconnect keep no memory (short version)."""
    make, divisor = SCENARIOS[scenario]
    growth = retained_by_second_window(make(), SHORT // divisor)
    assert growth < SLACK, f"{scenario}: {growth} bytes kept by {SHORT // divisor} cycles"


@pytest.mark.stress
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_cycles_leave_no_growth_long(scenario: str) -> None:
    """100,000 cycles of connect, send and disconnect keep no memory."""
    make, divisor = SCENARIOS[scenario]
    growth = retained_by_second_window(make(), LONG // divisor)
    assert growth < SLACK, f"{scenario}: {growth} bytes kept by {LONG // divisor} cycles"


def test_async_sends_leave_no_growth() -> None:
    """``asend`` cycles in one running loop keep no memory."""
    signal = Signal()
    signal.connect(_handler, inline=True)
    signal.connect(_async_handler)

    async def window(cycles: int) -> None:
        for _ in range(cycles):
            await signal.asend(None)

    def run(cycles: int) -> int:
        async def main() -> int:
            await window(200)
            gc.collect()
            tracemalloc.start()
            try:
                await window(cycles)
                gc.collect()
                first = tracemalloc.get_traced_memory()[0]
                await window(cycles)
                gc.collect()
                return tracemalloc.get_traced_memory()[0] - first
            finally:
                tracemalloc.stop()

        return asyncio.run(main())

    growth = run(SHORT)
    assert growth < SLACK, f"{growth} bytes kept by {SHORT} asend cycles"


def test_the_check_sees_a_real_leak() -> None:
    """The check is not blind: Django 5.2's finalizer per weak connect shows as growth.

    Django 6.1 fixed that leak, so there the same cycles keep nothing, as in tidings.
    """
    oracle = django.dispatch.Signal()

    def cycle() -> object:
        oracle.connect(_handler)
        return oracle.disconnect(_handler)

    growth = retained_by_second_window(cycle, SHORT)
    if DJANGO_6:
        assert growth < SLACK, growth
    else:
        assert growth > SHORT * 16, growth
