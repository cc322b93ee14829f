"""Building a signal and the mistakes made while doing it: each one is an error at once.

``Signal("order_placed")`` (the name passed as ``use_caching``) and a string sender on a plain
signal (a lazy model reference meant for a ``ModelSignal``) fail loudly instead of producing a
signal that silently never fires; the repr shows the public class path.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

import tidings
from tests.core._support import assert_refusal
from tidings import InvalidSenderError, Signal, receiver
from tidings.apps import Apps
from tidings.models import ModelSignal


def _handler(**kwargs: Any) -> str:
    """A receiver that answers ``"handled"``."""
    return "handled"


def test_a_name_passed_as_use_caching_points_at_name() -> None:
    """``Signal("order_placed")`` is a TypeError that shows ``Signal(name='order_placed')``."""
    with pytest.raises(TypeError, match=re.escape("Signal(name='order_placed')")):
        Signal("order_placed")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [1, 0, None, "yes", 1.0], ids=repr)
def test_use_caching_must_be_a_bool(value: Any) -> None:
    """A ``use_caching`` that is not True or False is a TypeError naming the value."""
    with pytest.raises(TypeError, match=re.escape(f"not {value!r}")):
        Signal(use_caching=value)


@pytest.mark.parametrize("value", [True, False])
def test_use_caching_accepts_bools(value: bool) -> None:
    """``use_caching=True``/``False`` is accepted and kept, as in Django."""
    assert Signal(use_caching=value).use_caching is value


def test_name_must_be_a_string() -> None:
    """A name that is not a string is a TypeError."""
    with pytest.raises(TypeError, match="name="):
        Signal(name=42)  # type: ignore[arg-type]


def test_repr_shows_the_public_class_path() -> None:
    """An unnamed signal's repr says ``tidings.Signal``, not the private module."""
    assert re.fullmatch(r"<tidings\.Signal at 0x[0-9a-f]+>", repr(Signal()))
    assert re.fullmatch(r"<tidings\.models\.ModelSignal at 0x[0-9a-f]+>", repr(ModelSignal()))
    assert repr(Signal(name="order_paid")) == "<Signal 'order_paid'>"


@pytest.mark.parametrize("weak", [True, False], ids=["weak", "strong"])
def test_string_sender_on_a_plain_signal_is_refused(weak: bool) -> None:
    """A string sender on a plain signal is an InvalidSenderError; nothing is connected."""
    signal = Signal(name="order_placed")
    with pytest.raises(InvalidSenderError) as info:
        signal.connect(_handler, sender="shop.Item", weak=weak)
    assert_refusal(
        info.value,
        ValueError,
        "test_construction._handler",
        "<Signal 'order_placed'>",
        "'shop.Item'",
        "string_senders=True",
    )
    assert signal.receivers == []


def test_receiver_with_a_model_and_a_plain_signal_connects_nothing() -> None:
    """``@receiver([model_signal, plain], sender="shop.Item")`` fails before connecting any."""
    registry = Apps()
    saved = ModelSignal(name="saved")
    custom = Signal(name="custom")
    with pytest.raises(InvalidSenderError, match="custom"):
        receiver([saved, custom], sender="shop.Item", apps=registry)(_handler)
    assert custom.receivers == []

    class Item:
        pass

    registry.register_model("shop", Item)
    assert saved.receivers == []


def test_string_senders_can_be_allowed() -> None:
    """A signal created with ``string_senders=True`` takes string senders literally."""
    signal = Signal(name="payment", string_senders=True)
    signal.connect(_handler, sender="stripe")
    assert signal.send("stripe") == [(_handler, "handled")]
    assert signal.send("paypal") == []


def test_string_senders_flag_must_be_a_bool() -> None:
    """``string_senders`` that is not a bool is a TypeError."""
    with pytest.raises(TypeError, match="string_senders"):
        Signal(string_senders="yes")  # type: ignore[arg-type]


def test_model_signal_still_resolves_string_senders() -> None:
    """A ModelSignal's string sender stays a lazy model reference."""
    registry = Apps()
    saved = ModelSignal(name="saved")
    saved.connect(_handler, sender="shop.Item", apps=registry)

    class Item:
        pass

    registry.register_model("shop", Item)
    assert saved.send(Item) == [(_handler, "handled")]


def test_sending_from_a_string_stays_allowed() -> None:
    """Only connecting for a string sender is refused; a send from one reaches receivers of any."""
    signal = Signal()
    signal.connect(_handler)
    assert signal.send("anything") == [(_handler, "handled")]
    assert tidings.Signal().send("nobody") == []
