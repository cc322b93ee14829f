"""The delivery seam: ``connect(delivery=...)``, the handler registry and the one delivery path.

A test handler registered for ``Delivery.ON_COMMIT`` stands in for an integration: it records
every :class:`Deferral` it is offered and takes it or declines it as the test says.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

import pytest

from tests.core._support import Recorder, assert_refusal, dispatch, names
from tidings import (
    AsyncReceiversInEventLoopError,
    Delivery,
    DeliveryOptionsError,
    InvalidDeliveryError,
    Signal,
    receiver,
)
from tidings._delivery import Deferral, handler_for, register_handler

SEND_METHODS = ["send", "send_robust", "asend", "asend_robust"]
ON_COMMIT = Delivery.ON_COMMIT


class Handler:
    """A delivery handler that records deferrals and takes them while ``taking`` is true."""

    def __init__(self) -> None:
        self.taking = True
        self.deferred: list[Deferral] = []
        self.validated: list[tuple[Signal, Callable[..., Any], Mapping[str, Any]]] = []
        self.error: BaseException | None = None
        self.allowed: set[str] = {"max_attempts", "name"}

    def validate(
        self, signal: Any, receiver: Callable[..., Any], options: Mapping[str, Any]
    ) -> None:
        """Accept only the option names in ``allowed``."""
        self.validated.append((signal, receiver, options))
        unknown = set(options) - self.allowed
        if unknown:
            raise TypeError(f"unknown options {sorted(unknown)}")

    def defer(self, deferral: Deferral) -> bool:
        """Record ``deferral``; raise ``error`` if set; return ``taking``."""
        if self.error is not None:
            raise self.error
        self.deferred.append(deferral)
        return self.taking


@pytest.fixture
def handler() -> Iterator[Handler]:
    """A test handler registered for ON_COMMIT, the previous one restored afterwards."""
    previous = handler_for(ON_COMMIT)
    fresh = Handler()
    register_handler(ON_COMMIT, fresh)
    try:
        yield fresh
    finally:
        register_handler(ON_COMMIT, previous)


@pytest.fixture
def no_handler() -> Iterator[None]:
    """No handler registered for ON_COMMIT (as when no transactional integration is loaded)."""
    previous = handler_for(ON_COMMIT)
    register_handler(ON_COMMIT, None)
    try:
        yield
    finally:
        register_handler(ON_COMMIT, previous)


def _info(signal: Signal) -> list[tuple[str, Delivery, dict[str, Any]]]:
    return [
        (info.receiver.__name__, info.delivery, dict(info.options))
        for info in signal.live_receivers()
    ]


# -- connecting ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [Delivery.ON_COMMIT, "on_commit"], ids=["member", "string"])
def test_connect_accepts_member_or_value(handler: Handler, value: Any) -> None:
    """``delivery`` accepts a Delivery member or its string; introspection shows the member."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"))
    signal.connect(rec.sync("b"), delivery=value)
    assert _info(signal) == [("a", Delivery.IMMEDIATE, {}), ("b", ON_COMMIT, {})]
    assert signal.live_receivers()[1].delivery is ON_COMMIT


def test_delivery_values_are_strings() -> None:
    """Delivery members are strings equal to their values."""
    assert Delivery("immediate") is Delivery.IMMEDIATE
    assert str(Delivery.ON_COMMIT) == "on_commit"
    assert isinstance(Delivery.ON_COMMIT, str)


def test_unknown_delivery_is_a_value_error_listing_valid_ones() -> None:
    """An unknown delivery names the receiver, the signal and the valid values; connects nothing."""
    rec, signal = Recorder(), Signal(name="orders")
    with pytest.raises(InvalidDeliveryError) as caught:
        signal.connect(rec.sync("mailer"), delivery="later")
    assert_refusal(
        caught.value, ValueError, "mailer", "'orders'", "'later'", "'immediate', 'on_commit'"
    )
    assert not signal.has_connections()


def test_options_given_to_immediate_are_a_type_error_naming_them() -> None:
    """Options for a mode that takes none are a TypeError naming them; nothing is connected."""
    rec, signal = Recorder(), Signal()
    with pytest.raises(DeliveryOptionsError, match="max_attempts, timeout") as caught:
        signal.connect(rec.sync("a"), timeout=3, max_attempts=2)
    assert isinstance(caught.value, TypeError)
    assert signal.receivers == []


@pytest.mark.usefixtures("no_handler")
def test_on_commit_without_handler_takes_no_options() -> None:
    """With no handler registered, ON_COMMIT takes no options either."""
    rec, signal = Recorder(), Signal()
    with pytest.raises(DeliveryOptionsError, match="name"):
        signal.connect(rec.sync("a"), delivery="on_commit", name="x")


def test_handler_validates_options_at_connect(handler: Handler) -> None:
    """The mode's handler sees every connect's options and may refuse the connection."""
    rec, signal = Recorder(), Signal()
    a = rec.sync("a")
    signal.connect(a, delivery=ON_COMMIT, max_attempts=3)
    assert handler.validated == [(signal, a, {"max_attempts": 3})]
    with pytest.raises(TypeError, match="bogus"):
        signal.connect(rec.sync("b"), delivery=ON_COMMIT, bogus=1)
    assert _info(signal) == [("a", ON_COMMIT, {"max_attempts": 3})]
    options = signal.live_receivers()[0].options
    assert isinstance(options, MappingProxyType)


def test_receiver_decorator_passes_delivery_and_options(handler: Handler) -> None:
    """``@receiver(signal, delivery=..., **options)`` connects with them."""
    first, second = Signal(), Signal()

    @receiver([first, second], delivery="on_commit", name="audit")
    def audited(**kwargs: Any) -> None:
        """Receive."""

    for signal in (first, second):
        assert _info(signal) == [("audited", ON_COMMIT, {"name": "audit"})]


# -- sending ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", SEND_METHODS)
def test_deferred_receiver_response_is_the_marker_in_order(handler: Handler, method: str) -> None:
    """A taken receiver is not called; its response is its Delivery member, in its place."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"))
    signal.connect(rec.sync("b"), delivery="on_commit")
    signal.connect(rec.asynchronous("c"), delivery="on_commit")
    signal.connect(rec.asynchronous("d"))
    signal.connect(rec.sync("e"), inline=True)
    responses = dispatch(signal, method, None, value=1)
    assert names(responses) == [
        ("a", "a-result"),
        ("b", ON_COMMIT),
        ("e", "e-result"),
        ("c", ON_COMMIT),
        ("d", "d-result"),
    ]
    assert rec.calls == ["a", "e", "d"]
    assert [d.name.rsplit(".", 1)[-1] for d in handler.deferred] == ["b", "c"]


def test_deferral_carries_the_send_exactly(handler: Handler) -> None:
    """A Deferral holds the signal, a receiver getter, its name, mode, options and kwargs."""
    rec, signal = Recorder(), Signal()
    b = rec.sync("b")
    signal.connect(b, delivery=ON_COMMIT, max_attempts=2)
    signal.connect(rec.asynchronous("c"), delivery=ON_COMMIT, name="named-c")
    sender = object()
    signal.send(sender, value=1, other="x")
    first, second = handler.deferred
    assert first.signal is signal
    assert first.receiver() is b
    assert first.name == "tests.core._support.b"  # module.qualname (Recorder renames them)
    assert (first.is_async, first.delivery, dict(first.options)) == (
        False,
        ON_COMMIT,
        {"max_attempts": 2},
    )
    assert first.kwargs == {"signal": signal, "sender": sender, "value": 1, "other": "x"}
    assert (second.name, second.is_async) == ("named-c", True)


def test_deferral_getter_of_a_dead_weak_receiver_is_none(handler: Handler) -> None:
    """A Deferral's receiver getter yields None once the weak receiver has died."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("b"), delivery=ON_COMMIT)
    signal.send(None)
    rec.forget("b")
    handler.validated.clear()  # it holds the receiver too
    gc.collect()
    assert handler.deferred[0].receiver() is None


@pytest.mark.parametrize("method", SEND_METHODS)
def test_declined_receiver_runs_in_place(handler: Handler, method: str) -> None:
    """A handler returning False makes the core call the receiver at once, in its place."""
    handler.taking = False
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"))
    signal.connect(rec.sync("b"), delivery=ON_COMMIT)
    signal.connect(rec.asynchronous("c"), delivery=ON_COMMIT)
    signal.connect(rec.sync("d"))
    responses = dispatch(signal, method, None)
    assert names(responses) == [
        ("a", "a-result"),
        ("b", "b-result"),
        ("d", "d-result"),
        ("c", "c-result"),
    ]
    assert rec.calls == ["a", "b", "d", "c"]
    assert len(handler.deferred) == 2


@pytest.mark.usefixtures("no_handler")
@pytest.mark.parametrize("method", SEND_METHODS)
def test_on_commit_without_handler_runs_at_once(method: str) -> None:
    """With no handler registered no transaction can be open: ON_COMMIT receivers run at once."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("b"), delivery=ON_COMMIT)
    signal.connect(rec.asynchronous("c"), delivery=ON_COMMIT)
    assert names(dispatch(signal, method, None)) == [("b", "b-result"), ("c", "c-result")]


@pytest.mark.parametrize("method", SEND_METHODS)
def test_handler_exception_propagates_from_every_send(handler: Handler, method: str) -> None:
    """A handler's exception propagates, from the robust sends too; later receivers do not run."""
    handler.error = LookupError("cannot serialize")
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"))
    signal.connect(rec.sync("b"), delivery=ON_COMMIT)
    signal.connect(rec.sync("c"))
    with pytest.raises(LookupError, match="cannot serialize"):
        dispatch(signal, method, None)
    assert rec.calls == ["a"]


@pytest.mark.parametrize("method", ["send_robust", "asend_robust"])
def test_robust_sends_keep_markers_and_errors(handler: Handler, method: str) -> None:
    """Robust sends return the marker of a deferred receiver beside another's caught error."""
    rec, signal = Recorder(), Signal()
    error = ValueError("boom")
    signal.connect(rec.sync("a", error=error))
    signal.connect(rec.sync("b"), delivery=ON_COMMIT)
    signal.connect(rec.asynchronous("c", error=error))
    assert names(dispatch(signal, method, None)) == [("a", error), ("b", ON_COMMIT), ("c", error)]


def test_send_in_running_loop_with_only_taken_async_receivers(handler: Handler) -> None:
    """send() inside a loop is fine when every async receiver is deferred by its handler."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"))
    signal.connect(rec.asynchronous("c"), delivery=ON_COMMIT)

    async def main() -> list[tuple[str, Any]]:
        return names(signal.send(None))

    assert asyncio.run(main()) == [("a", "a-result"), ("c", ON_COMMIT)]


def test_send_in_running_loop_when_handler_declines_an_async_receiver(handler: Handler) -> None:
    """A declined async receiver inside a running loop raises; no coroutine is left behind."""
    handler.taking = False
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"))
    signal.connect(rec.asynchronous("c"), delivery=ON_COMMIT)

    async def main() -> None:
        signal.send(None)

    with pytest.raises(AsyncReceiversInEventLoopError, match="declined") as caught:
        asyncio.run(main())
    assert caught.value.receivers_called is True
    gc.collect()  # a coroutine never awaited would warn here (warnings are errors)
    assert rec.calls == ["a"]


def test_live_receivers_for_a_sender_show_delivery_in_call_order(handler: Handler) -> None:
    """``live_receivers(sender)`` lists deferred receivers in the order a send treats them."""
    rec, signal = Recorder(), Signal()
    sender = object()
    signal.connect(rec.asynchronous("x"), delivery=ON_COMMIT)
    signal.connect(rec.sync("y"), sender=sender, delivery=ON_COMMIT)
    signal.connect(rec.sync("z"))
    assert [(info.receiver.__name__, info.delivery) for info in signal.live_receivers(sender)] == [
        ("y", ON_COMMIT),
        ("z", Delivery.IMMEDIATE),
        ("x", ON_COMMIT),
    ]


def test_has_connections_is_the_cheap_nothing_connected_check() -> None:
    """``has_connections()`` is False exactly while nothing at all is connected."""
    rec, signal = Recorder(), Signal()
    assert not signal.has_connections()
    signal.connect(rec.sync("a"), sender=object)
    assert signal.has_connections()
    assert not signal.has_listeners()
    signal.disconnect(rec.receivers["a"], sender=object)
    assert not signal.has_connections()


def test_register_handler_refuses_immediate() -> None:
    """IMMEDIATE is the core's own mode: no handler can be registered for it."""
    with pytest.raises(ValueError, match="IMMEDIATE"):
        register_handler(Delivery.IMMEDIATE, Handler())
