"""Sending: matching by identity, call order, snapshot semantics, errors, caching.

Statement numbers (#n) refer to the numbered list in docs/semantics.md.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest

from tests.core._support import Recorder, Thing, make_sender, names
from tidings import Signal


def test_receiver_gets_signal_sender_and_named(sender: Any, weak: bool) -> None:
    """Receivers are called as ``receiver(signal=, sender=, **named)`` (#20)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"), sender=sender, weak=weak)
    assert names(signal.send(sender, x=1, y="two")) == [("a", "a-result")]
    [kwargs] = rec.kwargs
    assert kwargs == {"signal": signal, "sender": sender, "x": 1, "y": "two"}
    assert kwargs["sender"] is sender


def test_sender_may_be_passed_by_keyword(sender: Any) -> None:
    """``send(sender=...)`` works like the positional form (#16)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"), sender=sender)
    assert names(signal.send(sender=sender)) == [("a", "a-result")]


@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_send_rejects_extra_positional_and_missing_sender(method: str) -> None:
    """``send`` takes exactly one positional argument, the sender (#16)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"))
    with pytest.raises(TypeError):
        getattr(signal, method)(None, "extra")
    with pytest.raises(TypeError):
        getattr(signal, method)()
    assert rec.calls == []


@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_signal_keyword_collides(method: str, sender: Any) -> None:
    """A keyword named ``signal`` collides with the signal argument: ``TypeError`` (#16)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"), sender=sender)
    with pytest.raises(TypeError, match="signal"):
        getattr(signal, method)(sender, signal="other")
    with pytest.raises(TypeError):
        getattr(signal, method)(sender, self="other")
    assert rec.calls == []


def test_no_receivers_returns_empty_list(sender: Any) -> None:
    """A send without receivers returns ``[]`` (#17)."""
    assert Signal().send(sender) == []
    assert Signal().send_robust(sender) == []


def test_specific_receiver_ignores_other_senders(specific_sender: Any, weak: bool) -> None:
    """A receiver connected for a sender is not called for another sender or ``None`` (#18)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"), sender=specific_sender, weak=weak)
    assert signal.send(None) == []
    assert signal.send(Thing()) == []
    assert signal.send(object()) == []
    assert names(signal.send(specific_sender)) == [("a", "a-result")]


def test_any_sender_receiver_gets_every_sender(sender: Any, weak: bool) -> None:
    """A receiver connected for ``None`` is called for every sender (#18)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"), weak=weak)
    assert names(signal.send(sender)) == [("a", "a-result")]
    assert rec.kwargs[0]["sender"] is sender


def test_equal_but_distinct_senders_differ() -> None:
    """Senders match by identity: an equal but distinct tuple is another sender (#18)."""
    rec, signal = Recorder(), Signal()
    # Built at run time: two equal tuple literals would be one constant object.
    first = tuple(range(1, 3))
    second = tuple(range(1, 3))
    assert first == second
    assert first is not second
    signal.connect(rec.sync("a"), sender=first)
    assert signal.send(second) == []
    assert names(signal.send(first)) == [("a", "a-result")]


def test_bound_method_sender_matches_new_bound_method() -> None:
    """A bound-method sender is matched by (object, function), like a fresh ``obj.meth`` (#6)."""
    rec, signal, thing = Recorder(), Signal(), Thing()
    signal.connect(rec.sync("a"), sender=thing.method)
    assert names(signal.send(thing.method)) == [("a", "a-result")]
    assert signal.send(Thing().method) == []
    assert signal.send(thing) == []


def test_temporary_bound_method_sender_stays_connected() -> None:
    """A connection for a fresh ``obj.meth`` sender lives as long as ``obj`` (5.2, not 6.1, #11)."""
    rec, signal, thing = Recorder(), Signal(), Thing()
    signal.connect(rec.sync("a"), sender=thing.method)
    gc.collect()
    assert signal.has_listeners(thing.method)
    assert names(signal.send(thing.method)) == [("a", "a-result")]


def test_results_in_connection_order(sender: Any, weak: bool) -> None:
    """``send`` returns ``[(receiver, response)]`` in connection order (#23)."""
    rec, signal = Recorder(), Signal()
    for name in ("x", "y", "z"):
        signal.connect(rec.sync(name), sender=sender, weak=weak)
    responses = signal.send(sender)
    assert names(responses) == [("x", "x-result"), ("y", "y-result"), ("z", "z-result")]
    assert [r for r, _ in responses] == [rec.receivers[n] for n in ("x", "y", "z")]


def test_bound_method_result_is_equal_not_identical(weak: bool) -> None:
    """The receiver returned for a bound method equals the connected one (#23)."""
    signal, thing = Signal(), Thing()
    bound = thing.method
    signal.connect(bound, weak=weak)
    [(got, value)] = signal.send(None)
    assert got == bound
    assert value == "method"


def test_exception_propagates_and_stops(sender: Any, weak: bool) -> None:
    """A receiver's exception leaves ``send`` unchanged; later receivers are not called (#21)."""
    rec, signal = Recorder(), Signal()
    error = LookupError("boom")
    signal.connect(rec.sync("a"), sender=sender, weak=weak)
    signal.connect(rec.sync("b", error=error), sender=sender, weak=weak)
    signal.connect(rec.sync("c"), sender=sender, weak=weak)
    signal.connect(rec.asynchronous("d"), sender=sender, weak=weak)
    with pytest.raises(LookupError) as info:
        signal.send(sender)
    assert info.value is error
    assert rec.calls == ["a", "b"]


def test_disconnected_during_send_is_still_called(sender: Any, weak: bool) -> None:
    """A receiver disconnected by an earlier receiver is still called by that send (#19)."""
    rec, signal, removed = Recorder(), Signal(), []
    later = rec.sync("later")

    def remover(**kwargs: Any) -> None:
        rec.calls.append("remover")
        removed.append(signal.disconnect(later, sender=sender))

    signal.connect(remover, sender=sender, weak=weak)
    signal.connect(later, sender=sender, weak=weak)
    signal.send(sender)
    assert rec.calls == ["remover", "later"]
    signal.send(sender)
    assert rec.calls == ["remover", "later", "remover"]
    assert removed == [True, False]


def test_self_disconnecting_receivers_all_called(sender: Any, weak: bool) -> None:
    """Receivers that disconnect themselves are all called once; the signal ends empty (#19)."""
    signal, calls = Signal(), []

    def make(name: str) -> Any:
        def handler(**kwargs: Any) -> None:
            calls.append(name)
            signal.disconnect(handler, sender=sender)

        return handler

    handlers = [make(name) for name in "abc"]
    for handler in handlers:
        signal.connect(handler, sender=sender, weak=weak)
    signal.send(sender)
    signal.send(sender)
    assert calls == ["a", "b", "c"]
    assert signal.receivers == []


def test_connected_during_send_is_not_called(sender: Any, weak: bool) -> None:
    """A receiver connected during a send is not called by it, but by the next (#19)."""
    rec, signal = Recorder(), Signal()
    newcomer = rec.sync("newcomer")

    def adder(**kwargs: Any) -> None:
        rec.calls.append("adder")
        signal.connect(newcomer, sender=sender, weak=weak)

    signal.connect(adder, sender=sender, weak=weak)
    signal.send(sender)
    assert rec.calls == ["adder"]
    signal.send(sender)
    assert rec.calls == ["adder", "adder", "newcomer"]


def test_receiver_dying_during_send_is_still_called(sender: Any) -> None:
    """A weak receiver whose last reference goes during a send is still called by it (#19)."""
    rec, signal = Recorder(), Signal()

    def killer(**kwargs: Any) -> None:
        rec.calls.append("killer")
        rec.forget("victim")
        gc.collect()

    signal.connect(killer, sender=sender)
    signal.connect(rec.sync("victim"), sender=sender)
    responses = signal.send(sender)
    assert rec.calls == ["killer", "victim"]
    assert [name for name, _ in names(responses)] == ["killer", "victim"]
    del responses
    gc.collect()
    assert names(signal.send(sender)) == [("killer", None)]


def test_reentrant_send_from_receiver(sender: Any) -> None:
    """A receiver may send the same signal again without deadlock (#41)."""
    rec, signal = Recorder(), Signal()

    def nested(depth: int = 0, **kwargs: Any) -> int:
        rec.calls.append(f"nested-{depth}")
        if depth < 2:
            signal.send(sender, depth=depth + 1)
        return depth

    signal.connect(nested, sender=sender)
    signal.send(sender)
    assert rec.calls == ["nested-0", "nested-1", "nested-2"]


@pytest.mark.parametrize("kind", ["none", "object", "int", "list", "dict", "class"])
def test_use_caching_accepts_every_sender(kind: str) -> None:
    """With ``use_caching=True`` any sender works, where Django raises ``TypeError`` (#37)."""
    rec, signal = Recorder(), Signal(use_caching=True)
    sender = make_sender(kind)
    signal.connect(rec.sync("any"))
    signal.connect(rec.sync("specific"), sender=sender)
    expected = ["any", "specific"]
    assert [n for n, _ in names(signal.send(sender))] == expected
    assert [n for n, _ in names(signal.send_robust(sender))] == expected
    assert signal.has_listeners(sender)


@pytest.mark.parametrize("use_caching", [False, True], ids=["plain", "caching"])
@pytest.mark.parametrize("kind", ["list", "dict"])
def test_unhashable_senders_work(kind: str, use_caching: bool) -> None:
    """Unhashable senders can be connected and sent, where Django raises ``TypeError`` (#37)."""
    rec, signal = Recorder(), Signal(use_caching=use_caching)
    sender = make_sender(kind)
    signal.connect(rec.sync("a"), sender=sender)
    assert names(signal.send(sender)) == [("a", "a-result")]
    assert signal.send(make_sender(kind)) == []
    assert signal.disconnect(rec.receivers["a"], sender=sender) is True


class _ValueEqual:
    """Instances equal to each other by value, hashable: a trap for equality-keyed caches."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ValueEqual)

    def __hash__(self) -> int:
        return 1


def test_caching_matches_by_identity_not_equality() -> None:
    """With caching, an equal but distinct sender never reuses another sender's receivers."""
    rec, signal = Recorder(), Signal(use_caching=True)
    first, second = _ValueEqual(), _ValueEqual()
    signal.connect(rec.sync("a"), sender=first)
    assert names(signal.send(first)) == [("a", "a-result")]
    assert signal.send(second) == []
    assert not signal.has_listeners(second)


def test_caching_sees_later_connections() -> None:
    """With caching, connect and disconnect after a send change what the next send calls (#35)."""
    rec, signal, thing = Recorder(), Signal(use_caching=True), Thing()
    assert signal.send(thing) == []
    signal.connect(rec.sync("a"), sender=thing)
    assert names(signal.send(thing)) == [("a", "a-result")]
    signal.disconnect(rec.receivers["a"], sender=thing)
    assert signal.send(thing) == []


def test_caching_does_not_keep_senders_alive() -> None:
    """A cached send does not keep its sender alive (#36)."""
    signal, calls = Signal(use_caching=True), []

    def count(**kwargs: Any) -> None:
        calls.append(1)

    signal.connect(count)
    thing = Thing()
    ref = weakref.ref(thing)
    signal.send(thing)
    del thing
    gc.collect()
    assert ref() is None
    assert calls == [1]
