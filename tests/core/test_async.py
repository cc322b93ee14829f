"""Async receivers and async sends, without asgiref.

``send()`` from sync code runs async receivers concurrently in a fresh event loop after the sync
ones; inside a running loop it refuses before calling anything. ``asend()`` runs sync receivers
in a worker thread (on the loop with ``inline=True``), then async receivers concurrently.
Statement numbers (#n) refer to the numbered list in docs/semantics.md.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import threading
import warnings
from typing import Any

import pytest

from tests.core._support import Recorder, dispatch, names
from tidings import AsyncReceiversInEventLoopError, Signal

counter: contextvars.ContextVar[int] = contextvars.ContextVar("counter", default=0)


def _rendezvous(signal: Signal, sender: Any, *, weak: bool = True) -> list[Any]:
    """Connect two async receivers that each finish only once the other has started."""
    started = {"left": asyncio.Event(), "right": asyncio.Event()}

    def make(name: str, other: str) -> Any:
        async def receiver(**kwargs: Any) -> str:
            started[name].set()
            await asyncio.wait_for(started[other].wait(), timeout=5)
            return name

        return receiver

    receivers = [make("left", "right"), make("right", "left")]
    for r in receivers:
        signal.connect(r, sender=sender, weak=weak)
    return receivers


@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_send_runs_async_receivers_concurrently(method: str, sender: Any, weak: bool) -> None:
    """``send()`` from sync code awaits async receivers concurrently (#22)."""
    signal = Signal()
    receivers = _rendezvous(signal, sender, weak=weak)
    responses = getattr(signal, method)(sender)
    assert responses == [(receivers[0], "left"), (receivers[1], "right")]


@pytest.mark.parametrize("method", ["asend", "asend_robust"])
def test_asend_runs_async_receivers_concurrently(method: str, sender: Any, weak: bool) -> None:
    """``asend()`` awaits async receivers concurrently (#30)."""
    signal = Signal()
    receivers = _rendezvous(signal, sender, weak=weak)
    responses = asyncio.run(getattr(signal, method)(sender))
    assert responses == [(receivers[0], "left"), (receivers[1], "right")]


@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_send_sync_first_then_async(method: str, sender: Any, weak: bool) -> None:
    """``send()`` calls all sync receivers, in order, before the async ones (#22, #23)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.asynchronous("async-1"), sender=sender, weak=weak)
    signal.connect(rec.sync("sync-1"), sender=sender, weak=weak)
    signal.connect(rec.asynchronous("async-2"), sender=sender, weak=weak)
    signal.connect(rec.sync("sync-2"), sender=sender, weak=weak)
    responses = getattr(signal, method)(sender, x=1)
    order = ["sync-1", "sync-2", "async-1", "async-2"]
    assert names(responses) == [(n, f"{n}-result") for n in order]
    assert rec.calls == order
    assert all(kwargs == {"signal": signal, "sender": sender, "x": 1} for kwargs in rec.kwargs)


@pytest.mark.parametrize("method", ["asend", "asend_robust"])
def test_asend_sync_first_then_async(method: str, sender: Any, weak: bool) -> None:
    """``asend()`` returns sync results in order, then async results in order (#32)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.asynchronous("async-1"), sender=sender, weak=weak)
    signal.connect(rec.sync("sync-1"), sender=sender, weak=weak)
    signal.connect(rec.asynchronous("async-2"), sender=sender, weak=weak)
    signal.connect(rec.sync("sync-2"), sender=sender, weak=weak, inline=True)
    responses = asyncio.run(getattr(signal, method)(sender, x=1))
    order = ["sync-1", "sync-2", "async-1", "async-2"]
    assert names(responses) == [(n, f"{n}-result") for n in order]
    assert rec.calls == order


@pytest.mark.parametrize("method", ["send", "send_robust", "asend", "asend_robust"])
def test_only_async_receivers(method: str, sender: Any) -> None:
    """Every send method works when only async receivers are connected (ticket #35174, #34)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.asynchronous("a"), sender=sender)
    signal.connect(rec.asynchronous("b"), sender=sender)
    responses = dispatch(signal, method, sender)
    assert names(responses) == [("a", "a-result"), ("b", "b-result")]


@pytest.mark.parametrize("method", ["asend", "asend_robust"])
def test_asend_without_receivers(method: str, sender: Any) -> None:
    """``asend`` with no matching receiver returns ``[]`` (#28)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("other"), sender=object())
    assert asyncio.run(getattr(signal, method)(sender)) == []
    assert rec.calls == []


@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_send_inside_running_loop_refuses_before_any_receiver(method: str, sender: Any) -> None:
    """Inside a running loop, ``send()`` with async receivers raises before calling anyone."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("sync"), sender=sender)
    signal.connect(rec.asynchronous("async"), sender=sender)

    async def main() -> None:
        with pytest.raises(AsyncReceiversInEventLoopError, match="asend") as info:
            getattr(signal, method)(sender)
        assert isinstance(info.value, RuntimeError)

    asyncio.run(main())
    assert rec.calls == []


@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_send_inside_running_loop_without_async_match(method: str) -> None:
    """Inside a running loop, ``send()`` works when no async receiver matches the sender."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("sync"))
    signal.connect(rec.asynchronous("elsewhere"), sender=object())

    async def main() -> list[tuple[Any, Any]]:
        return getattr(signal, method)(None)  # type: ignore[no-any-return]

    assert names(asyncio.run(main())) == [("sync", "sync-result")]


def test_asend_sync_receivers_share_one_worker_thread() -> None:
    """``asend`` runs the sync receivers in order in one thread other than the loop's (#29)."""
    signal, seen = Signal(), []

    def make(name: str) -> Any:
        def receiver(**kwargs: Any) -> None:
            seen.append((name, threading.get_ident()))

        return receiver

    receivers = [make("a"), make("b")]
    for r in receivers:
        signal.connect(r)

    async def main() -> int:
        await signal.asend(None)
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert [name for name, _ in seen] == ["a", "b"]
    assert seen[0][1] == seen[1][1] != loop_thread


def test_asend_inline_receiver_runs_on_the_loop_thread() -> None:
    """A sync receiver connected with ``inline=True`` runs on the event loop's thread."""
    signal, seen = Signal(), {}

    def inline(**kwargs: Any) -> None:
        seen["inline"] = threading.get_ident()
        seen["loop"] = asyncio.get_running_loop() is not None

    def threaded(**kwargs: Any) -> None:
        seen["threaded"] = threading.get_ident()

    signal.connect(inline, inline=True)
    signal.connect(threaded)

    async def main() -> int:
        await signal.asend(None)
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert seen["inline"] == loop_thread
    assert seen["loop"] is True
    assert seen["threaded"] != loop_thread
    assert [info.inline for info in signal.live_receivers()] == [True, False]


def test_asend_robust_wraps_each_async_receiver(caplog: pytest.LogCaptureFixture) -> None:
    """One failing async receiver does not cancel the others; sync results come first (#27)."""
    rec, signal = Recorder(), Signal()
    error = KeyError("async failure")
    signal.connect(rec.asynchronous("failing", error=error))
    signal.connect(rec.asynchronous("async"))
    signal.connect(rec.sync("sync"))
    with caplog.at_level(logging.ERROR, logger="tidings"):
        responses = asyncio.run(signal.asend_robust(None))
    assert names(responses) == [
        ("sync", "sync-result"),
        ("failing", error),
        ("async", "async-result"),
    ]
    assert error.__traceback__ is not None
    [record] = caplog.records
    assert record.getMessage() == (
        "Error calling failing in Signal.send_robust() ('async failure')"
    )
    assert record.exc_info is not None
    assert record.exc_info[1] is error


@pytest.mark.parametrize("method", ["send_robust", "asend_robust"])
def test_robust_mixed_failures(method: str, caplog: pytest.LogCaptureFixture) -> None:
    """Robust sends turn sync and async failures alike into responses, in result order (#27)."""
    rec, signal = Recorder(), Signal()
    sync_error, async_error = ValueError("sync"), ValueError("async")
    signal.connect(rec.asynchronous("async-bad", error=async_error))
    signal.connect(rec.sync("sync-bad", error=sync_error))
    signal.connect(rec.asynchronous("async-ok"))
    signal.connect(rec.sync("sync-ok"))
    with caplog.at_level(logging.ERROR, logger="tidings"):
        responses = dispatch(signal, method, None)
    assert names(responses) == [
        ("sync-bad", sync_error),
        ("sync-ok", "sync-ok-result"),
        ("async-bad", async_error),
        ("async-ok", "async-ok-result"),
    ]
    assert len(caplog.records) == 2


def test_asend_sync_failure_stops_before_async() -> None:
    """In ``asend`` a failing sync receiver propagates and no async receiver starts (#31)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.asynchronous("async"))
    signal.connect(rec.sync("failing", error=LookupError("sync failure")))
    signal.connect(rec.sync("after"))
    with pytest.raises(LookupError, match="sync failure"):
        asyncio.run(signal.asend(None))
    assert rec.calls == ["failing"]


@pytest.mark.parametrize("method", ["send", "asend"])
def test_async_failure_propagates(method: str) -> None:
    """A failing async receiver's exception propagates from ``send``/``asend`` (#21, #31)."""
    rec, signal = Recorder(), Signal()
    error = LookupError("async failure")
    signal.connect(rec.sync("sync"))
    signal.connect(rec.asynchronous("failing", error=error))
    with pytest.raises(LookupError) as info:
        dispatch(signal, method, None)
    assert info.value is error
    assert rec.calls == ["sync", "failing"]


@pytest.mark.parametrize("method", ["asend", "asend_robust"])
def test_asend_signal_keyword_collides(method: str) -> None:
    """``asend`` with a keyword named ``signal`` raises ``TypeError`` and calls nobody (#16)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("sync"))
    signal.connect(rec.asynchronous("async"))
    with pytest.raises(TypeError, match="signal"):
        asyncio.run(getattr(signal, method)(None, signal=1))
    assert rec.calls == []


@pytest.mark.parametrize("method", ["asend", "asend_robust"])
def test_asend_snapshot_semantics(method: str, sender: Any) -> None:
    """``asend`` snapshots receivers: those disconnected during it still run, new ones don't."""
    rec, signal = Recorder(), Signal()
    victim, newcomer = rec.asynchronous("victim"), rec.sync("newcomer")

    def churn(**kwargs: Any) -> None:
        rec.calls.append("churn")
        signal.disconnect(victim, sender=sender)
        signal.connect(newcomer, sender=sender)

    signal.connect(churn, sender=sender)
    signal.connect(victim, sender=sender)
    asyncio.run(getattr(signal, method)(sender))
    assert rec.calls == ["churn", "victim"]


def _increment(**kwargs: Any) -> int:
    """A sync receiver that increments the ``counter`` context variable."""
    counter.set(counter.get() + 1)
    return counter.get()


def _increment_too(**kwargs: Any) -> int:
    """A second sync receiver that increments the ``counter`` context variable."""
    counter.set(counter.get() + 1)
    return counter.get()


@pytest.mark.parametrize("inline", [False, True], ids=["threaded", "inline"])
@pytest.mark.parametrize("method", ["asend", "asend_robust"])
def test_asend_sync_context_changes_reach_caller(method: str, inline: bool) -> None:
    """Context variables set by sync receivers in ``asend`` are seen by later ones and the caller.

    Django 5.2 loses them (its sync batch runs inside a ``gather`` task); 6.1 keeps them (#33).
    """
    signal = Signal()
    signal.connect(_increment, inline=inline)
    signal.connect(_increment_too, inline=inline)

    async def main() -> tuple[list[Any], int]:
        counter.set(1)
        responses = await getattr(signal, method)(None)
        return [value for _, value in responses], counter.get()

    assert asyncio.run(main()) == ([2, 3], 3)


@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_send_sync_context_changes_reach_caller(method: str) -> None:
    """Context variables set by sync receivers in ``send`` are seen by the caller (#33)."""
    signal = Signal()
    signal.connect(_increment)
    signal.connect(_increment_too)

    def main() -> tuple[list[Any], int]:
        counter.set(1)
        responses = getattr(signal, method)(None)
        return [value for _, value in responses], counter.get()

    assert contextvars.copy_context().run(main) == ([2, 3], 3)


def test_asend_two_failing_async_receivers_raise_the_first() -> None:
    """With two failing async receivers ``asend`` raises the first one's error, no group (#31)."""
    rec, signal = Recorder(), Signal()
    first, second = LookupError("first"), LookupError("second")
    signal.connect(rec.asynchronous("a", error=first))
    signal.connect(rec.asynchronous("b", error=second))
    with pytest.raises(LookupError) as info:
        asyncio.run(signal.asend(None))
    assert info.value is first
    assert rec.calls == ["a", "b"]


def test_asend_robust_lets_cancellation_through() -> None:
    """``asend_robust`` does not swallow ``asyncio.CancelledError``, a ``BaseException`` (#24)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.asynchronous("cancelled", error=asyncio.CancelledError()))
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(signal.asend_robust(None))


def test_asend_keeps_order_across_inline_and_threaded_receivers() -> None:
    """Alternating inline and threaded sync receivers are called and returned in order."""
    signal, calls = Signal(), []

    def make(name: str) -> Any:
        def receiver(**kwargs: Any) -> str:
            calls.append(name)
            return name

        receiver.__name__ = name
        return receiver

    receivers = [make(n) for n in ("inline-1", "thread-1", "thread-2", "inline-2", "thread-3")]
    for r in receivers:
        signal.connect(r, inline=r.__name__.startswith("inline"))
    responses = asyncio.run(signal.asend(None))
    order = ["inline-1", "thread-1", "thread-2", "inline-2", "thread-3"]
    assert calls == order
    assert [value for _, value in responses] == order


def test_inline_is_ignored_by_send() -> None:
    """``inline=True`` changes nothing for ``send()``: the receiver is called in order."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"), inline=True)
    signal.connect(rec.sync("b"))
    assert names(signal.send(None)) == [("a", "a-result"), ("b", "b-result")]


def test_send_keeps_the_threads_current_event_loop() -> None:
    """``send()`` with async receivers leaves the thread's current (not running) loop set.

    Django runs them through asgiref in another thread and leaves the caller's loop alone.
    """
    rec, signal = Recorder(), Signal()
    signal.connect(rec.asynchronous("a"))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        assert names(signal.send(None)) == [("a", "a-result")]
        assert asyncio.get_event_loop() is loop
    finally:
        asyncio.set_event_loop(None)
        loop.close()


@pytest.mark.parametrize("method", ["asend", "asend_robust"])
def test_asend_only_inline_receivers(method: str, caplog: pytest.LogCaptureFixture) -> None:
    """With only inline sync receivers, ``asend`` calls them in order on the loop's thread."""
    signal, threads = Signal(), []
    error = ValueError("inline failure")

    def first(**kwargs: Any) -> str:
        threads.append(threading.get_ident())
        return "first"

    def failing(**kwargs: Any) -> str:
        threads.append(threading.get_ident())
        raise error

    signal.connect(first, inline=True)
    signal.connect(failing, inline=True)

    async def main() -> tuple[Any, int]:
        try:
            return await getattr(signal, method)(None), threading.get_ident()
        except ValueError as caught:
            return caught, threading.get_ident()

    result, loop_thread = asyncio.run(main())
    assert threads == [loop_thread, loop_thread]
    if method == "asend":
        assert result is error
    else:
        assert result == [(first, "first"), (failing, error)]
        assert len(caplog.records) == 1


def test_asend_mixed_inline_and_threaded_context_changes() -> None:
    """Context changes flow from an inline receiver to a threaded one and back to the caller."""
    signal = Signal()
    signal.connect(_increment, inline=True)
    signal.connect(_increment_too)

    async def main() -> tuple[list[Any], int]:
        counter.set(1)
        responses = await signal.asend(None)
        return [value for _, value in responses], counter.get()

    assert asyncio.run(main()) == ([2, 3], 3)


@pytest.mark.parametrize("method", ["send", "asend"])
def test_call_error_closes_the_coroutines_already_created(method: str) -> None:
    """When calling a later async receiver raises at once, earlier coroutines are closed."""
    ran: list[str] = []

    async def first(**kwargs: Any) -> None:
        ran.append("first")

    async def needs_order(*, order: int, **kwargs: Any) -> None:
        ran.append("needs_order")

    signal = Signal()
    signal.connect(first)
    signal.connect(needs_order)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TypeError, match="order"):
            dispatch(signal, method, None)
        gc.collect()
    assert [str(w.message) for w in caught] == []
    assert ran == []
