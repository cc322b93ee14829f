"""Mixed sync and async sends cancelled at any point: nothing of the send outlives it.

Hypothesis builds a signal with sync receivers (in the worker thread and inline), async
receivers that take a few steps, some of which fail, and cancels an ``asend``/``asend_robust``
after a chosen number of event-loop iterations, while other sends of the same signal run
concurrently. Whatever the moment, once the cancelled send is over every async and inline
receiver it started has ended (returned, raised or been cancelled), no task of it is left in
the loop, and the sends that were not cancelled return every response in the usual order. Sync
receivers already running in the worker thread cannot be interrupted (as in Django): they are
checked to end on their own, boundedly. The counts (sends,
cancelled, receivers started and ended) are reported on failure. A long version runs under the
``stress`` marker.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings import Signal


class Failure(Exception):
    """Raised by the receivers that are told to fail."""


@dataclass
class Tally:
    """What the receivers did, counted under a lock (sync receivers run in threads)."""

    started: int = 0
    ended: int = 0
    cancelled: int = 0
    in_thread: int = 0  # receivers started in the worker thread and not ended yet
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        """Count a receiver call that began."""
        with self.lock:
            self.started += 1
            self.in_thread += threading.current_thread() is not threading.main_thread()

    def end(self, *, cancelled: bool = False) -> None:
        """Count a receiver call that is over."""
        with self.lock:
            self.ended += 1
            self.cancelled += cancelled
            self.in_thread -= threading.current_thread() is not threading.main_thread()


def _sync_receiver(name: str, steps: int, fail: bool) -> Any:
    def receiver(tally: Tally, **kwargs: Any) -> str:
        tally.start()
        try:
            # Long enough for a cancellation to arrive while the worker thread runs it.
            time.sleep(steps / 1000)
            if fail:
                raise Failure(name)
            return name
        finally:
            tally.end()

    return receiver


def _async_receiver(name: str, steps: int, fail: bool) -> Any:
    async def receiver(tally: Tally, **kwargs: Any) -> str:
        tally.start()
        cancelled = False
        try:
            for _ in range(steps):
                await asyncio.sleep(0)
            if fail:
                raise Failure(name)
            return name
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            tally.end(cancelled=cancelled)

    return receiver


Plan = list[tuple[str, int, bool]]

plans_st = st.lists(
    st.tuples(st.sampled_from(["sync", "inline", "async"]), st.integers(0, 4), st.booleans()),
    min_size=1,
    max_size=6,
)


async def _scenario(
    plan: Plan, cancel_after: int, robust: bool, bystanders: int
) -> tuple[Tally, str, list[list[str]]]:
    """Cancel one send among ``bystanders`` others; return its tally, its end, their results."""
    signal = Signal(name="cancelled")
    keep = []
    for index, (kind, steps, fail) in enumerate(plan):
        name = f"{kind}{index}"
        if kind == "async":
            r = _async_receiver(name, steps, fail)
        else:
            r = _sync_receiver(name, steps if kind == "sync" else 0, fail)
        keep.append(r)
        signal.connect(r, inline=kind == "inline")
    others = [
        asyncio.ensure_future(signal.asend_robust(None, tally=Tally())) for _ in range(bystanders)
    ]
    tally = Tally()
    method = signal.asend_robust if robust else signal.asend
    victim = asyncio.ensure_future(method(None, tally=tally))
    for _ in range(cancel_after):
        await asyncio.sleep(0)
    victim.cancel()
    try:
        await victim
        outcome = "completed"
    except asyncio.CancelledError:
        outcome = "cancelled"
    except Failure:
        outcome = "failed"
    with tally.lock:
        over = Tally(tally.started, tally.ended + tally.in_thread, tally.cancelled)
    results = [[str(value) for _, value in await task] for task in others]
    assert asyncio.all_tasks() == {asyncio.current_task()}
    # What still ran in the worker thread ends on its own.
    deadline = time.monotonic() + 5
    while tally.in_thread and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    assert tally.in_thread == 0, tally
    return over, outcome, results


def _check(plan: Plan, cancel_after: int, robust: bool, bystanders: int) -> None:
    tally, outcome, results = asyncio.run(_scenario(plan, cancel_after, robust, bystanders))
    report = (
        f"plan={plan} cancel_after={cancel_after} robust={robust} outcome={outcome}: "
        f"receivers started={tally.started} ended={tally.ended} cancelled={tally.cancelled}"
    )
    assert tally.started == tally.ended, report
    sync = [f"{kind}{i}" for i, (kind, _, _) in enumerate(plan) if kind != "async"]
    asynchronous = [f"{kind}{i}" for i, (kind, _, _) in enumerate(plan) if kind == "async"]
    for got in results:
        assert got == sync + asynchronous, report


def _scenarios(
    examples: int, cancel_limit: int, bystander_limit: int
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Hypothesis settings and strategies for a test taking ``_check``'s arguments."""
    strategies = given(
        plan=plans_st,
        cancel_after=st.integers(0, cancel_limit),
        robust=st.booleans(),
        bystanders=st.integers(0, bystander_limit),
    )
    return lambda test: settings(max_examples=examples, deadline=None)(strategies(test))


@_scenarios(examples=40, cancel_limit=12, bystander_limit=2)
def test_cancelled_send_leaves_nothing_running(
    plan: Plan, cancel_after: int, robust: bool, bystanders: int
) -> None:
    """A send cancelled at any point has ended every receiver it started; others complete."""
    _check(plan, cancel_after, robust, bystanders)


@pytest.mark.stress
@_scenarios(examples=1500, cancel_limit=40, bystander_limit=4)
def test_cancelled_send_leaves_nothing_running_long(
    plan: Plan, cancel_after: int, robust: bool, bystanders: int
) -> None:
    """The long version: many more plans and cancellation points."""
    _check(plan, cancel_after, robust, bystanders)
