"""Where tidings deliberately differs from django.dispatch, each shown against Django itself.

The oracle is the installed Django: 5.2 on Python < 3.12, 6.1 on newer Pythons. Every test runs
the same scenario on a Django signal and on a tidings signal and asserts both behaviours, so
that a change on either side is noticed; where Django 6 changed its behaviour (and often made it
tidings'), the expectation for Django depends on ``DJANGO_6``. The differential state machine
(``test_differential.py``) keeps these scenarios out of its comparison.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
import time
import weakref
from typing import Any

import django
import django.dispatch
import pytest

import tidings
from tests.core._support import Bulky, retained_by_second_window

counter: contextvars.ContextVar[int] = contextvars.ContextVar("deviation_counter", default=0)

# Django 6.0 references senders weakly and 6.1 runs asend's receivers in a TaskGroup.
DJANGO_6 = django.VERSION >= (6, 0)


def _answer(**kwargs: Any) -> str:
    """A receiver that answers ``"answer"``."""
    return "answer"


def _inherited_at_reused_address(signal: Any) -> tuple[bool, bool]:
    """Connect for a sender, let it die; return (address reused, a reuser got the receiver)."""
    sender = Bulky()
    old_id = id(sender)
    signal.connect(_answer, sender=sender)
    del sender
    gc.collect()
    reusers = [c for c in (Bulky() for _ in range(5)) if id(c) == old_id]
    return bool(reusers), any(signal.send(c) for c in reusers)


def test_deviation_dead_sender_id_reuse() -> None:
    """Django 5.2 lets a new object at a dead sender's address inherit receivers; 6 and tidings not.

    Deviation (a) from 5.2, Django ticket #35801 (fixed in Django 6.0).
    """
    outcomes = {}
    for name, module in (("django", django.dispatch), ("tidings", tidings)):
        signal = module.Signal()
        # Most attempts reuse the address (CPython's allocator); try until one did, boundedly.
        for _ in range(200):
            reused, inherited = _inherited_at_reused_address(signal)
            if reused:
                break
        outcomes[name] = (reused, inherited)
    assert outcomes == {"django": (True, not DJANGO_6), "tidings": (True, False)}


@pytest.mark.parametrize("kind", ["none", "object", "int"])
def test_deviation_use_caching_with_any_sender(kind: str) -> None:
    """With ``use_caching=True`` Django rejects senders without weak references; tidings not.

    Deviation (b).
    """
    sender = {"none": None, "object": object(), "int": int("77777")}[kind]
    oracle = django.dispatch.Signal(use_caching=True)
    oracle.connect(_answer)
    with pytest.raises(TypeError, match="weak reference"):
        oracle.send(sender)
    signal = tidings.Signal(use_caching=True)
    signal.connect(_answer)
    assert signal.send(sender) == [(_answer, "answer")]


class _ValueEqual:
    """Instances equal to each other by value, and hashable."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ValueEqual)

    def __hash__(self) -> int:
        return 1


def test_deviation_caching_confuses_equal_senders() -> None:
    """Django's cache is keyed by equality, so an equal sender's entry hides the real one.

    Deviation (d): a sender with no receivers caches "none" for every sender equal to it.
    """
    results = {}
    for name, module in (("django", django.dispatch), ("tidings", tidings)):
        signal = module.Signal(use_caching=True)
        connected, lookalike = _ValueEqual(), _ValueEqual()
        signal.connect(_answer, sender=connected)
        results[name] = (len(signal.send(lookalike)), len(signal.send(connected)))
    assert results["django"] == (0, 0)
    assert results["tidings"] == (0, 1)


@pytest.mark.parametrize("sender", [[1, 2], {"a": 1}], ids=["list", "dict"])
def test_deviation_unhashable_sender(sender: Any) -> None:
    """Django cannot send from an unhashable sender once receivers exist; tidings can.

    Deviation (d).
    """
    oracle = django.dispatch.Signal()
    oracle.connect(_answer, sender=sender)
    with pytest.raises(TypeError, match="unhashable"):
        oracle.send(sender)
    signal = tidings.Signal()
    signal.connect(_answer, sender=sender)
    assert signal.send(sender) == [(_answer, "answer")]


class _Failing:
    """A failing callable instance: it has no ``__qualname__``."""

    def __call__(self, **kwargs: Any) -> None:
        raise ValueError("failed")


def test_deviation_robust_failure_without_qualname(caplog: pytest.LogCaptureFixture) -> None:
    """Django's ``send_robust`` crashes logging a receiver without ``__qualname__``.

    Deviation (d), statement #26: tidings logs the receiver's repr instead.
    """
    failing = _Failing()
    oracle = django.dispatch.Signal()
    oracle.connect(failing)
    with pytest.raises(AttributeError, match="__qualname__"):
        oracle.send_robust(None)
    signal = tidings.Signal()
    signal.connect(failing)
    [(receiver, error)] = signal.send_robust(None)
    assert receiver is failing
    assert isinstance(error, ValueError)
    assert repr(failing) in caplog.text


def test_deviation_send_in_running_loop_refuses_first() -> None:
    """In a running loop Django fails after calling the sync receivers; tidings before.

    Deviation (d), statement #22.
    """
    calls: list[str] = []

    def sync_receiver(**kwargs: Any) -> None:
        calls.append("sync")

    async def async_receiver(**kwargs: Any) -> None:
        calls.append("async")

    outcome = {}
    for name, module in (("django", django.dispatch), ("tidings", tidings)):
        signal = module.Signal()
        signal.connect(sync_receiver)
        signal.connect(async_receiver)

        async def main(signal: Any = signal) -> None:
            with pytest.raises(RuntimeError):
                signal.send(None)

        calls.clear()
        asyncio.run(main())
        outcome[name] = list(calls)
    assert outcome == {"django": ["sync"], "tidings": []}


def test_deviation_asend_runs_sync_receivers_first() -> None:
    """Django 5.2's ``asend`` overlaps sync and async receivers; 6.1 and tidings run sync first.

    Deviation (c) from 5.2, statements #29 and #30.
    """
    seen = {}
    for name, module in (("django", django.dispatch), ("tidings", tidings)):
        async_ran = threading.Event()
        patience = 2.0 if name == "django" and not DJANGO_6 else 0.05

        def sync_receiver(
            event: threading.Event = async_ran, patience: float = patience, **kwargs: Any
        ) -> bool:
            # True when the async receiver ran while this sync receiver was still running.
            return event.wait(timeout=patience)

        async def async_receiver(event: threading.Event = async_ran, **kwargs: Any) -> None:
            event.set()

        signal = module.Signal()
        signal.connect(sync_receiver)
        signal.connect(async_receiver)
        responses = asyncio.run(signal.asend(None))
        seen[name] = responses[0][1]
    assert seen == {"django": not DJANGO_6, "tidings": False}


def test_deviation_asend_failure_leaves_no_sync_receiver_running() -> None:
    """Django 5.2's ``asend`` may raise while its sync receivers still run; 6.1 and tidings not.

    Deviation (c) from 5.2: a failing async receiver makes Django's asend return while the sync
    batch goes on in its worker thread; in tidings (and Django 6.1) the async receivers start
    only after it.
    """
    logs = {}
    for name, module in (("django", django.dispatch), ("tidings", tidings)):
        log: list[str] = []
        gate, started = threading.Event(), threading.Event()
        patience = 5.0 if name == "django" and not DJANGO_6 else 0.0

        def slow(
            log: list[str] = log,
            gate: threading.Event = gate,
            started: threading.Event = started,
            patience: float = patience,
            **kwargs: Any,
        ) -> None:
            log.append("slow-start")
            started.set()
            gate.wait(timeout=patience)
            log.append("slow-end")

        async def failing(started: threading.Event = started, **kwargs: Any) -> None:
            # Fail only once the sync receiver has started (Django overlaps them; tidings not).
            for _ in range(50):
                if started.is_set():
                    break
                await asyncio.sleep(0.01)
            raise ValueError("async failure")

        signal = module.Signal()
        signal.connect(slow)
        signal.connect(failing)
        with pytest.raises(ValueError, match="async failure"):
            asyncio.run(signal.asend(None))
        log.append("asend-raised")
        gate.set()
        deadline = time.monotonic() + 5
        while "slow-end" not in log and time.monotonic() < deadline:
            time.sleep(0.01)
        logs[name] = log
    in_order = ["slow-start", "slow-end", "asend-raised"]
    assert logs["django"] == (in_order if DJANGO_6 else ["slow-start", "asend-raised", "slow-end"])
    assert logs["tidings"] == in_order


def _increment(**kwargs: Any) -> int:
    """A sync receiver that increments the ``counter`` context variable."""
    counter.set(counter.get() + 1)
    return counter.get()


def test_deviation_asend_keeps_sync_context_changes() -> None:
    """Django 5.2's ``asend`` loses context changes of sync receivers; 6.1 and tidings keep them.

    Deviation (d) from 5.2, statement #33.
    """
    seen = {}
    for name, module in (("django", django.dispatch), ("tidings", tidings)):
        signal = module.Signal()
        signal.connect(_increment)

        async def main(signal: Any = signal) -> int:
            counter.set(1)
            await signal.asend(None)
            return counter.get()

        seen[name] = contextvars.Context().run(asyncio.run, main())
    assert seen == {"django": 2 if DJANGO_6 else 1, "tidings": 2}


def _no_kwargs(sender: Any) -> None:
    """A receiver without ``**kwargs``."""


def test_deviation_connect_always_validates() -> None:
    """Django validates receivers only under DEBUG; tidings always does.

    Deviation (d), statement #5: Django, unconfigured or with DEBUG off, registers the bad
    receiver and fails only when sending.
    """
    oracle = django.dispatch.Signal()
    oracle.connect(_no_kwargs)
    with pytest.raises(TypeError):
        oracle.send(None)
    signal = tidings.Signal()
    with pytest.raises(tidings.ReceiverSignatureError):
        signal.connect(_no_kwargs)
    assert signal.receivers == []


def _finalizers_of(obj: object) -> int:
    """How many live ``weakref.finalize`` objects watch ``obj``."""
    registry = weakref.finalize._registry  # type: ignore[attr-defined]
    return sum(1 for f in list(registry) if (f.peek() or (None,))[0] is obj)


def test_deviation_repeated_weak_connect_does_not_leak() -> None:
    """Django 5.2 leaves a ``weakref.finalize`` behind per weak connect; 6.1 and tidings do not.

    Deviation (d) from 5.2: connecting and disconnecting a long-lived receiver (a module-level
    function) in a loop grows Django's finalizer registry by one entry per connect, forever.
    Django 6.1 flags dead receivers from the weak reference's callback instead.
    """
    before = _finalizers_of(_answer)
    oracle = django.dispatch.Signal()
    for _ in range(1000):
        oracle.connect(_answer)
        oracle.disconnect(_answer)
    assert _finalizers_of(_answer) - before == (0 if DJANGO_6 else 1000)

    signal = tidings.Signal()

    def cycle() -> object:
        signal.connect(_answer)
        return signal.disconnect(_answer)

    growth = retained_by_second_window(cycle, 1000)
    assert growth < 2048, f"{growth} bytes kept by 1000 connect/disconnect cycles"


def test_deviation_bound_method_sender_kept() -> None:
    """Django 6 drops a connection for a bound-method sender at once; 5.2 and tidings keep it.

    Django 6.0 references the sender weakly, and a bound method fetched for ``connect`` is a
    temporary; tidings references the method's object, as documented.
    """
    results = {}
    for name, module in (("django", django.dispatch), ("tidings", tidings)):
        owner = Bulky()
        signal = module.Signal()
        signal.connect(_answer, sender=owner.method)
        gc.collect()
        results[name] = len(signal.send(owner.method))
    assert results == {"django": 0 if DJANGO_6 else 1, "tidings": 1}


class _Boom(Exception):
    """The failure of one async receiver."""


def _send_from_sync(signal: Any, method: str) -> Any:
    """Call ``signal.send(None)``, or run ``signal.asend(None)`` in a new event loop."""
    if method == "send":
        return signal.send(None)
    return asyncio.run(signal.asend(None))


def _failing_pair(log: list[str]) -> list[Any]:
    """Two async receivers that fail at once, each with its own name."""

    async def first(**kwargs: Any) -> None:
        log.append("first")
        raise _Boom("first")

    async def second(**kwargs: Any) -> None:
        log.append("second")
        raise _Boom("second")

    return [first, second]


@pytest.mark.parametrize("method", ["send", "asend"])
def test_deviation_several_async_failures_raise_the_first(
    method: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Two async receivers failing at once: Django 6.1 raises an ExceptionGroup, tidings the first.

    Django 5.2 (``gather``) raises the first as tidings does; tidings logs the other one.
    """
    raised = {}
    for name, module in (("django", django.dispatch), ("tidings", tidings)):
        log: list[str] = []
        receivers = _failing_pair(log)
        signal = module.Signal()
        for r in receivers:
            signal.connect(r)
        with pytest.raises(Exception) as info:
            _send_from_sync(signal, method)
        error = info.value
        raised[name] = (
            type(error).__name__,
            [str(e) for e in getattr(error, "exceptions", [error])],
            log,
        )
    expected_django = ("ExceptionGroup", ["first", "second"]) if DJANGO_6 else ("_Boom", ["first"])
    assert raised["django"] == (*expected_django, ["first", "second"])
    assert raised["tidings"] == ("_Boom", ["first"], ["first", "second"])
    assert "Another async receiver failed in the same send (second)" in caplog.text


def test_deviation_failure_cancels_other_async_receivers() -> None:
    """A failing async receiver: Django 5.2 leaves the others running; 6.1 and tidings cancel them.

    The slow receiver is still waiting when the failure comes; in tidings (and Django 6.1's
    TaskGroup) it is cancelled and has finished before ``asend`` raises.
    """
    seen = {}
    for name, module in (("django", django.dispatch), ("tidings", tidings)):
        log: list[str] = []

        async def slow(log: list[str] = log, **kwargs: Any) -> None:
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                log.append("slow-cancelled")
                raise

        async def failing(**kwargs: Any) -> None:
            await asyncio.sleep(0)
            raise _Boom("failed")

        signal = module.Signal()
        signal.connect(slow)
        signal.connect(failing)

        async def main(signal: Any = signal, log: list[str] = log) -> None:
            with pytest.raises(_Boom):
                await signal.asend(None)
            log.append("asend-raised")

        asyncio.run(main())
        seen[name] = log
    # In Django 5.2 the slow receiver is cancelled only when asyncio.run() ends.
    cancelled_first = ["slow-cancelled", "asend-raised"]
    assert seen["django"] == (cancelled_first if DJANGO_6 else ["asend-raised", "slow-cancelled"])
    assert seen["tidings"] == cancelled_first
