"""The compiled send path (``tidings._speedups``) and its choice at import time.

The whole core suite runs on whichever path is active: compiled by default where the extension
is built, pure with ``TIDINGS_NO_EXTENSIONS=1`` (CI runs both). These tests pin which path a run
uses, so that a silent fallback cannot pass for the compiled run, and the properties the pure
path has by construction: no leaked references, the receiver's traceback, the C buffers' edges.
"""

from __future__ import annotations

import collections
import gc
import importlib.util
import inspect
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tidings
import tidings._calls
from tests.core._support import Recorder, Thing
from tidings import Signal
from tidings._accel import pure_method

# The pure-Python dispatch: Signal's module and the delivery path it inherits.
DISPATCH_FILES = {
    inspect.getsourcefile(pure_method("send")),
    inspect.getsourcefile(tidings._calls),
}


def _expected_compiled() -> bool:
    """The path this run must use: pure when disabled, compiled when built (always under CI)."""
    if os.environ.get("TIDINGS_NO_EXTENSIONS", "") not in ("", "0"):
        return False
    return (
        os.environ.get("CI") == "true" or importlib.util.find_spec("tidings._speedups") is not None
    )


def test_active_path_is_the_expected_one() -> None:
    """``tidings.compiled`` and ``Signal.send`` show the path the environment asks for."""
    expected = _expected_compiled()
    assert tidings.compiled is expected
    for name in ("send", "send_robust"):
        method = vars(Signal)[name]
        assert inspect.isfunction(method) is not expected, (name, method)
        assert pure_method(name) is getattr(method, "pure", method)
        assert inspect.isfunction(pure_method(name))


@pytest.mark.parametrize("value", ["1", "yes"])
def test_no_extensions_variable_forces_the_pure_path(value: str) -> None:
    """``TIDINGS_NO_EXTENSIONS`` set to a non-empty value other than ``0`` keeps the pure path."""
    code = "import inspect, tidings as t; print(t.compiled, inspect.isfunction(t.Signal.send))"
    env = {**os.environ, "TIDINGS_NO_EXTENSIONS": value}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    ).stdout.split()
    assert out == ["False", "True"]


@pytest.mark.parametrize("value", ["", "0"])
def test_no_extensions_variable_empty_or_0_leaves_the_compiled_path(value: str) -> None:
    """``TIDINGS_NO_EXTENSIONS`` empty or ``0`` changes nothing: compiled where it is built."""
    if importlib.util.find_spec("tidings._speedups") is None:
        pytest.skip("the compiled module is not built here")
    code = "import inspect, tidings as t; print(t.compiled, inspect.isfunction(t.Signal.send))"
    env = {**os.environ, "TIDINGS_NO_EXTENSIONS": value}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    ).stdout.split()
    assert out == ["True", "False"]


def _frames(error: BaseException) -> list[traceback.FrameSummary]:
    return list(traceback.extract_tb(error.__traceback__))


@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_send_runs_on_the_active_path(method: str) -> None:
    """The compiled path runs no pure-Python dispatch frame in the plain case; the pure one does."""
    signal, error = Signal(), ValueError("boom")

    def failing(**kwargs: Any) -> None:
        raise error

    signal.connect(failing)
    if method == "send":
        with pytest.raises(ValueError):
            signal.send(None)
    else:
        logger = logging.getLogger("tidings")
        logger.disabled = True
        try:
            assert signal.send_robust(None) == [(failing, error)]
        finally:
            logger.disabled = False
    in_dispatch = [f.name for f in _frames(error) if f.filename in DISPATCH_FILES]
    assert bool(in_dispatch) is not tidings.compiled, in_dispatch


def test_receiver_exception_keeps_its_own_traceback() -> None:
    """A receiver's exception reaches the caller as itself, its last frame the raising line."""
    signal, error = Signal(), KeyError("missing")

    def failing(**kwargs: Any) -> None:
        raise error

    signal.connect(failing)
    with pytest.raises(KeyError) as caught:
        signal.send(None)
    assert caught.value is error
    assert _frames(error)[-1].name == "failing"
    assert _frames(error)[0].name == test_receiver_exception_keeps_its_own_traceback.__name__


def test_base_exception_escapes_send_robust_without_logging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``send_robust`` lets a ``BaseException`` through; later receivers do not run; no log."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("stop", error=KeyboardInterrupt()))
    signal.connect(rec.sync("after"))
    with caplog.at_level(logging.DEBUG, logger="tidings"), pytest.raises(KeyboardInterrupt):
        signal.send_robust(None)
    assert rec.calls == ["stop"]
    assert caplog.records == []


def test_failure_logging_sees_the_error_as_handled() -> None:
    """While ``send_robust`` logs a failure, the failure is the exception being handled."""
    seen: list[BaseException | None] = []

    class Spy(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            seen.append(sys.exc_info()[1])
            return False

    rec, signal = Recorder(), Signal()
    error = ValueError("bad")
    signal.connect(rec.sync("failing", error=error))
    logger, spy = logging.getLogger("tidings"), Spy()
    logger.addFilter(spy)
    try:
        assert signal.send_robust(None)[0][1] is error
    finally:
        logger.removeFilter(spy)
    assert seen == [error]
    assert sys.exc_info() == (None, None, None)


def test_many_receivers_and_named_values_match_the_pure_path() -> None:
    """Past the C arrays' on-stack sizes (40 receivers, 20 values) results equal the pure path's."""
    rec, signal = Recorder(), Signal()
    things = [Thing() for _ in range(10)]
    for i in range(30):
        signal.connect(rec.sync(f"r{i}"), weak=i % 2 == 0)
    for thing in things:
        signal.connect(thing.method)
    named = {f"k{i}": i for i in range(20)}
    compiled = signal.send(None, **named)
    pure = pure_method("send")(signal, None, **named)
    assert compiled == pure
    assert len(compiled) == 40
    assert rec.kwargs[0] == {"signal": signal, "sender": None, **named}


def test_many_keyword_sets_and_nested_sends_are_all_right() -> None:
    """Sends with 40 different keyword sets, some nested in a receiver, pass each its own names."""
    outer, inner = Signal(), Signal()
    received: list[tuple[str, ...]] = []

    def record(signal: Signal, sender: Any, **named: Any) -> None:
        received.append(tuple(sorted(named)))

    def resend(signal: Signal, sender: Any, **named: Any) -> None:
        for i in range(20):
            inner.send(sender, **{f"inner{i}": i})
        received.append(tuple(sorted(named)))

    outer.connect(resend)
    outer.connect(record)
    inner.connect(record)
    for i in range(20):
        outer.send(None, **{f"outer{i}": i, "common": 0})
    expected: list[tuple[str, ...]] = []
    for i in range(20):
        expected.extend((f"inner{j}",) for j in range(20))
        expected.extend([("common", f"outer{i}")] * 2)
    assert received == expected


def test_signature_and_docs_are_the_pure_methods() -> None:
    """``Signal.send``/``send_robust`` show the pure methods' signature, name and docstring."""
    for name in ("send", "send_robust"):
        method, pure = getattr(Signal, name), pure_method(name)
        assert inspect.signature(method) == inspect.signature(pure)
        assert inspect.signature(getattr(Signal(), name)) == inspect.signature(pure.__get__(0))
        assert (method.__name__, method.__qualname__, method.__doc__) == (
            pure.__name__,
            pure.__qualname__,
            pure.__doc__,
        )


@pytest.fixture
def logged_messages() -> Iterator[collections.Counter[str]]:
    """Count the ``tidings`` logger's messages and drop the records, which hold tracebacks."""
    messages: collections.Counter[str] = collections.Counter()

    def drop(record: logging.LogRecord) -> bool:
        messages[record.getMessage()] += 1
        return False

    logger = logging.getLogger("tidings")
    logger.addFilter(drop)
    yield messages
    logger.removeFilter(drop)


def test_a_million_sends_leak_nothing(logged_messages: collections.Counter[str]) -> None:
    """1,000,000 sends, plain and robust, failing or not, leave no object or reference behind.

    Release builds have no ``sys.gettotalrefcount``; instead, references held by the arguments,
    the receivers and the signal are counted exactly, and allocated memory blocks loosely (a
    leak per send would be a million blocks; the bound allows only incidental caching).
    """
    thing, signal, value = Thing(), Signal(), object()

    def ok(**kwargs: Any) -> int:
        return 1

    def failing(**kwargs: Any) -> None:
        raise ValueError("bad")

    signal.connect(ok)
    signal.connect(ok, dispatch_uid="strong", weak=False)
    signal.connect(thing.method)
    failing_signal = Signal()
    failing_signal.connect(failing)
    failing_signal.connect(ok)
    # A bound-method sender key: the compiled method hands these sends to the pure one.
    delegated = Signal()
    delegated.connect(ok, sender=thing.method)
    delegated.connect(ok, dispatch_uid="any")
    rounds: list[tuple[Callable[..., Any], int]] = [
        (signal.send, 350_000),
        (signal.send_robust, 350_000),
        (Signal().send, 150_000),  # nothing connected
        (delegated.send, 130_000),
        (failing_signal.send_robust, 20_000),
    ]
    watched = [thing, signal, value, ok, failing, failing_signal, delegated, Thing.method]

    def run(scale: int) -> None:
        for send, count in rounds:
            for _ in range(count // scale):
                send(thing, value=value)

    run(1000)  # warm up caches, interned names and the logging machinery
    gc.collect()
    references = [sys.getrefcount(o) for o in watched]
    blocks = sys.getallocatedblocks()
    run(1)
    gc.collect()
    assert [sys.getrefcount(o) for o in watched] == references
    assert sys.getallocatedblocks() - blocks < 1000
    message = f"Error calling {failing.__qualname__} in Signal.send_robust() (bad)"
    assert logged_messages == {message: 20_020}


def test_forwarded_keyword_dicts_pass_each_send_its_own_names_and_values() -> None:
    """``send(sender, **named)`` with equal names in another order passes each send's values."""
    signal, received = Signal(), []

    def record(signal: Signal, sender: Any, **named: Any) -> None:
        received.append(list(named.items()))

    signal.connect(record)
    orders = [{"a": 1, "b": 2}, {"b": 3, "a": 4}, {"a": 5, "b": 6}, {"a": 7}, {"b": 8, "a": 9}]
    for named in orders:
        signal.send(None, **named)
    assert received == [list(named.items()) for named in orders]
    with pytest.raises(TypeError, match="signal"):
        signal.send(None, **{"a": 1, "signal": 2})


def test_state_defined_on_a_subclass_is_read_through_its_attribute() -> None:
    """A subclass's ``_state`` property is honoured, also once set after sends were made."""

    class Muted(Signal):
        pass

    signal, rec = Muted(), Recorder()
    signal.connect(rec.sync("r"))
    assert len(signal.send(None)) == 1
    # Set on the class after sends read the instance dict: a changed type is asked again.
    setattr(Muted, "_state", property(lambda self: None))  # noqa: B010
    assert signal.send(None) == []
    assert pure_method("send")(signal, None) == []
    delattr(Muted, "_state")
    assert len(signal.send(None)) == 1
    assert rec.calls == ["r", "r"]


@pytest.mark.skipif(not tidings.compiled, reason="the compiled path is not active")
def test_init_hook_calls_the_hooks_around_the_constructor_when_signals_have_connections() -> None:
    """``InitHook`` forwards the arguments, calls ``before``/``after`` only while connected."""
    from tidings._speedups import InitHook

    pre, post = Signal(), Signal()
    calls: list[tuple[Any, ...]] = []

    def inner(self: Any, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("fail"):
            raise ValueError("constructor failed")
        calls.append(("inner", args, kwargs))
        if kwargs.get("nested"):
            self.__dict__["marker"] = True
            self.__init__(*args)  # a nested call, as super().__init__() makes: no hooks

    class Model:
        __init__ = InitHook(
            inner,
            pre,
            post,
            lambda obj, args, kwargs: calls.append(("before", args, kwargs)),
            lambda obj: calls.append(("after", type(obj).__name__)),
            "marker",
        )

    Model(1, a=2)
    assert calls == [("inner", (1,), {"a": 2})]
    calls.clear()
    pre.connect(_noop)
    post.connect(_noop)
    Model(1, a=2)
    assert calls == [("before", (1,), {"a": 2}), ("inner", (1,), {"a": 2}), ("after", "Model")]
    calls.clear()
    with pytest.raises(ValueError, match="constructor failed"):
        Model(fail=True)
    assert calls == [("before", (), {"fail": True})]
    calls.clear()
    Model(3, nested=True)
    assert calls == [
        ("before", (3,), {"nested": True}),
        ("inner", (3,), {"nested": True}),
        ("inner", (3,), {}),
        ("after", "Model"),
    ]


def _noop(**kwargs: Any) -> None:
    return None
