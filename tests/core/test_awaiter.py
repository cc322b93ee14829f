"""The awaiter: ``send()`` in a running loop's thread awaiting async receivers through it.

The awaiter used here runs the awaitable to completion on a helper thread's own event loop,
which is what SQLAlchemy's greenlet bridge amounts to for the core: a sync call that returns
the awaitable's result. The integration's own tests cover the real bridge.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from tests.core._support import Recorder, names
from tidings import AsyncReceiversInEventLoopError, Signal
from tidings._async import awaiting, current_awaiter

T = TypeVar("T")


class HelperLoopAwaiter:
    """Awaits from sync code by running the awaitable on a helper thread's event loop."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, awaitable: Awaitable[T]) -> T:
        self.calls += 1

        async def run() -> T:
            return await awaitable

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, run()).result()


def _in_loop(call: Any) -> Any:
    """Run ``call()`` from sync code inside a running event loop; return its result."""

    async def main() -> Any:
        return call()

    return asyncio.run(main())


def test_awaiting_is_scoped_to_its_block() -> None:
    """``awaiting()`` installs the awaiter for its block only."""
    awaiter = HelperLoopAwaiter()
    assert current_awaiter() is None
    with awaiting(awaiter):
        assert current_awaiter() is awaiter
    assert current_awaiter() is None


@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_send_in_running_loop_awaits_through_the_awaiter(method: str) -> None:
    """Under ``awaiting``, sync receivers run inline in order, then async ones are awaited."""
    rec, signal, awaiter = Recorder(), Signal(), HelperLoopAwaiter()
    threads: list[int] = []
    signal.connect(rec.asynchronous("x"))
    signal.connect(rec.sync("a"))
    signal.connect(rec.asynchronous("y"))
    tracker = rec.sync("b")

    def b(**kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return tracker(**kwargs)

    signal.connect(b)

    def call() -> Any:
        with awaiting(awaiter):
            return getattr(signal, method)(None)

    responses = _in_loop(call)
    assert names(responses) == [
        ("a", "a-result"),
        ("b", "b-result"),
        ("x", "x-result"),
        ("y", "y-result"),
    ]
    assert threads == [threading.get_ident()]
    assert awaiter.calls == 1


def test_send_outside_a_loop_ignores_the_awaiter() -> None:
    """Outside a running loop, send() runs async receivers in its own loop, not the awaiter."""
    rec, signal, awaiter = Recorder(), Signal(), HelperLoopAwaiter()
    signal.connect(rec.asynchronous("x"))
    with awaiting(awaiter):
        assert names(signal.send(None)) == [("x", "x-result")]
    assert awaiter.calls == 0


def test_without_awaiter_send_in_loop_still_refuses() -> None:
    """Without an awaiter, send() in a running loop refuses before any receiver runs."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"))
    signal.connect(rec.asynchronous("x"))
    with pytest.raises(AsyncReceiversInEventLoopError) as caught:
        _in_loop(lambda: signal.send(None))
    assert rec.calls == []
    assert caught.value.receivers_called is False


def test_failure_cancels_and_awaits_the_others_before_propagating() -> None:
    """When one async receiver fails, the others are cancelled and finished before send raises."""
    signal, awaiter = Signal(), HelperLoopAwaiter()
    events: list[str] = []

    async def failing(**kwargs: Any) -> None:
        await asyncio.sleep(0)
        raise LookupError("failed")

    async def slow(**kwargs: Any) -> None:
        try:
            await asyncio.sleep(30)
            events.append("slow finished")
        except asyncio.CancelledError:
            events.append("slow cancelled")
            raise

    signal.connect(slow)
    signal.connect(failing)

    def call() -> Any:
        with awaiting(awaiter):
            return signal.send(None)

    with pytest.raises(LookupError, match="failed"):
        _in_loop(call)
    assert events == ["slow cancelled"]


def test_robust_failure_under_awaiter_lets_the_others_finish() -> None:
    """send_robust under an awaiter returns the failure and every other result."""
    rec, signal, awaiter = Recorder(), Signal(), HelperLoopAwaiter()
    error = LookupError("failed")
    signal.connect(rec.asynchronous("x", error=error))
    signal.connect(rec.asynchronous("y"))

    def call() -> Any:
        with awaiting(awaiter):
            return signal.send_robust(None)

    assert names(_in_loop(call)) == [("x", error), ("y", "y-result")]
