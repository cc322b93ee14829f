"""Odd receivers and senders: each works as Django's does, or fails at connect as documented.

Hypothesis picks a receiver (functions, classes, static and class methods, partials, builtins,
callable instances, async functions, objects whose ``__eq__``, ``__hash__``, ``__repr__`` or
``__getattr__`` raise, non-callables, callables without ``**kwargs``), a sender (the same kinds
of odd objects, builtins, bound methods, ``None``), a reference strength and a send method, and
runs connect, send and disconnect on a Django signal and on a tidings signal. Either tidings
refuses the connection with one of its documented errors (an error deriving from
``TidingsError`` whose message can be printed) and connects nothing, or both libraries give the
same results. The deviations listed in docs/differences.md that concern senders (unhashable
ones, bound methods on Django 6) are checked for tidings' documented behaviour instead.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from collections.abc import Callable, Iterator
from typing import Any

import django
import django.dispatch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tidings

DJANGO_6 = django.VERSION >= (6, 0)
METHODS = ("send", "send_robust", "asend", "asend_robust")


class OddError(Exception):
    """What the odd objects' special methods raise."""


def _function(**kwargs: Any) -> str:
    return "function"


def _no_kwargs(sender: Any) -> str:
    return "no-kwargs"


async def _async_function(**kwargs: Any) -> str:
    await asyncio.sleep(0)
    return "async"


def _with_value(value: int, **kwargs: Any) -> int:
    return value


class _Built:
    """A class as a receiver: calling it builds an instance."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


class _Holder:
    """Static, class and instance methods as receivers."""

    @staticmethod
    def static(**kwargs: Any) -> str:
        return "static"

    @classmethod
    def klass(cls, **kwargs: Any) -> str:
        return "classmethod"

    def method(self, **kwargs: Any) -> str:
        return "method"


class _CallableInstance:
    """A callable instance (no ``__qualname__``)."""

    def __call__(self, **kwargs: Any) -> str:
        return "callable"


class _EqRaises(_CallableInstance):
    def __eq__(self, other: object) -> bool:
        raise OddError("__eq__")

    __hash__ = object.__hash__


class _HashRaises(_CallableInstance):
    def __hash__(self) -> int:
        raise OddError("__hash__")


class _ReprRaises(_CallableInstance):
    def __repr__(self) -> str:
        raise OddError("__repr__")


class _GetattrRaises(_CallableInstance):
    def __getattr__(self, name: str) -> Any:
        raise OddError(f"__getattr__({name})")


class _FailingReprRaises(_ReprRaises):
    def __call__(self, **kwargs: Any) -> str:
        raise ValueError("failed")


RECEIVERS: dict[str, Callable[[], Any]] = {
    "function": lambda: _function,
    "no-kwargs": lambda: _no_kwargs,
    "async-function": lambda: _async_function,
    "class": lambda: _Built,
    "staticmethod": lambda: _Holder.static,
    "classmethod": lambda: _Holder.klass,
    "bound-method": lambda: _Holder().method,
    "partial": lambda: functools.partial(_with_value, value=7),
    "builtin-dict": lambda: dict,
    "builtin-len": lambda: len,
    "builtin-max": lambda: max,
    "callable-instance": _CallableInstance,
    "eq-raises": _EqRaises,
    "hash-raises": _HashRaises,
    "repr-raises": _ReprRaises,
    "getattr-raises": _GetattrRaises,
    "failing-repr-raises": _FailingReprRaises,
    "non-callable": object,
}

SENDERS: dict[str, Callable[[], Any]] = {
    "none": lambda: None,
    "class": lambda: _Holder,
    "instance": _Holder,
    "object": object,
    "int": lambda: int("987654"),
    "tuple": lambda: (1, 2),
    "builtin": lambda: len,
    "partial": lambda: functools.partial(_with_value, 1),
    "bound-method": lambda: _Holder().method,
    "eq-raises": _EqRaises,
    "hash-raises": _HashRaises,
    "repr-raises": _ReprRaises,
    "getattr-raises": _GetattrRaises,
    "list": lambda: [1],
}

# Senders for which docs/differences.md documents that tidings works where Django does not:
# unhashable ones (Django hashes the sender), ones whose attribute lookup raises (Django's
# connect looks for ``__func__``) and, on Django 6, bound methods.
DEVIATING_SENDERS = {"hash-raises", "list", "getattr-raises"} | (
    {"bound-method"} if DJANGO_6 else set()
)


def _value(value: Any) -> Any:
    """A comparable form of a response or an outcome."""
    if isinstance(value, BaseException):
        value.__traceback__ = None
        return ("raised", type(value).__name__)
    if isinstance(value, _Built):
        return ("built", sorted(value.kwargs))
    if isinstance(value, dict):
        return ("dict", sorted(value))
    return value


def _run(
    module: Any, receiver: Any, sender: Any, weak: bool, method: str
) -> tuple[Any, Any, Any, int]:
    """Connect, send with ``method``, disconnect; return the three outcomes and a count.

    The count is the number of connections after the connect (0 when it was refused).
    """
    signal = module.Signal()
    outcomes: list[Any] = []
    try:
        signal.connect(receiver, sender=sender, weak=weak)
        outcomes.append(("ok", None))
    except Exception as error:
        outcomes.append(("raised", error))
    connected = len(signal.receivers)
    try:
        call = getattr(signal, method)
        responses = asyncio.run(call(sender)) if method.startswith("a") else call(sender)
        outcomes.append(("ok", [_value(v) for _, v in responses]))
    except Exception as error:
        outcomes.append(("raised", _value(error)))
    try:
        outcomes.append(("ok", signal.disconnect(receiver, sender=sender)))
    except Exception as error:
        outcomes.append(("raised", _value(error)))
    return outcomes[0], outcomes[1], outcomes[2], connected


@pytest.fixture(autouse=True)
def _quiet_robust_logs() -> Iterator[None]:
    """Keep the robust sends' failure logs (and their tracebacks) out of the report."""
    loggers = [logging.getLogger("tidings"), logging.getLogger("django.dispatch")]
    for lg in loggers:
        lg.disabled = True
    try:
        yield
    finally:
        for lg in loggers:
            lg.disabled = False


@settings(max_examples=300, deadline=None)
@given(
    receiver_kind=st.sampled_from(sorted(RECEIVERS)),
    sender_kind=st.sampled_from(sorted(SENDERS)),
    weak=st.booleans(),
    method=st.sampled_from(METHODS),
)
def test_odd_receivers_and_senders(
    receiver_kind: str, sender_kind: str, weak: bool, method: str
) -> None:
    """Each odd receiver and sender works as in Django or fails at connect as documented."""
    _check(receiver_kind, sender_kind, weak, method)


@pytest.mark.stress
def test_every_odd_receiver_and_sender() -> None:
    """The long version: every receiver, sender, reference strength and send method."""
    for combination in itertools.product(
        sorted(RECEIVERS), sorted(SENDERS), (True, False), METHODS
    ):
        _check(*combination)


def _check(receiver_kind: str, sender_kind: str, weak: bool, method: str) -> None:
    """Run one combination on both libraries and compare (see the module docstring)."""
    receiver, sender = RECEIVERS[receiver_kind](), SENDERS[sender_kind]()
    connect, send, disconnect, connected = _run(tidings, receiver, sender, weak, method)
    if connect[0] == "raised":
        error = connect[1]
        assert isinstance(error, tidings.TidingsError), repr(type(error))
        assert str(error)  # the message can be built and printed
        assert connected == 0
        return
    if receiver_kind == "failing-repr-raises" and method.endswith("robust"):
        # Django's robust sends crash logging a receiver without __qualname__; tidings logs a
        # placeholder for its repr() and returns the error (docs/differences.md).
        assert send == ("ok", [("raised", "ValueError")])
        return
    if sender_kind in DEVIATING_SENDERS:
        # tidings treats these senders as any other object: Django's results for a plain
        # instance are the oracle.
        sender = _Holder()
    oracle = _run(django.dispatch, receiver, sender, weak, method)
    expected = (_outcome(oracle[0]), oracle[1], oracle[2], oracle[3])
    assert (_outcome(connect), send, disconnect, connected) == expected


def _outcome(outcome: tuple[str, Any]) -> tuple[str, Any]:
    kind, value = outcome
    return (kind, _value(value)) if kind == "raised" else outcome


class _SignatureRaises(_CallableInstance):
    @property
    def __signature__(self) -> Any:
        raise OddError("__signature__")


def test_receiver_whose_signature_raises_is_refused_by_name() -> None:
    """A receiver whose ``__signature__`` raises fails connect with InvalidReceiverError."""
    signal = tidings.Signal(name="odd")
    receiver = _SignatureRaises()
    with pytest.raises(tidings.InvalidReceiverError, match="OddError: __signature__") as info:
        signal.connect(receiver, weak=False)
    assert "_SignatureRaises" in str(info.value)
    assert isinstance(info.value.__cause__, OddError)
    assert signal.receivers == []


@pytest.mark.parametrize("method", ["send_robust", "asend_robust"])
def test_failing_receiver_whose_repr_raises_is_logged(
    method: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A robust send logs a failing receiver whose ``repr()`` raises, and goes on."""
    logging.getLogger("tidings").disabled = False  # the autouse fixture silenced it
    signal = tidings.Signal(name="odd")
    failing = _FailingReprRaises()
    signal.connect(failing)
    signal.connect(_function)
    call = getattr(signal, method)
    responses = asyncio.run(call(None)) if method.startswith("a") else call(None)
    assert [_value(v) for _, v in responses] == [("raised", "ValueError"), "function"]
    assert "_FailingReprRaises object at 0x" in caplog.text
    assert "(repr() failed)" in caplog.text
