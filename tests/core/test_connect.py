"""Connecting and disconnecting: identity keys, duplicates, dispatch_uid, validation.

Statement numbers (#n) refer to the numbered list in docs/semantics.md.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from typing import Any

import pytest
from asgiref.sync import markcoroutinefunction

import tidings
from tests.core._support import Recorder, Slotted, Thing, names
from tidings import InvalidReceiverError, ReceiverSignatureError, Signal, receiver


def test_constructor_takes_only_use_caching() -> None:
    """``Signal(use_caching=...)`` is the Django constructor; ``providing_args`` is gone (#1)."""
    assert Signal().use_caching is False
    assert Signal(use_caching=True).use_caching is True
    with pytest.raises(TypeError):
        Signal(providing_args=["x"])  # type: ignore[call-arg]


def test_public_attributes() -> None:
    """A signal exposes ``receivers`` as a list and ``lock`` as a usable lock (#2)."""
    signal = Signal()
    assert signal.receivers == []
    assert isinstance(signal.lock, (type(threading.Lock()), type(threading.RLock())))


def test_lock_held_while_swapping_receivers() -> None:
    """Holding ``lock`` while reading and assigning ``receivers`` does not deadlock (#2)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"))
    with signal.lock:
        saved = signal.receivers
        signal.receivers = []
        signal.receivers = saved
    assert names(signal.send(None)) == [("a", "a-result")]


def test_factory_boy_style_muting_round_trip() -> None:
    """Saving ``receivers``, emptying it, then ``+=`` and clearing the cache restores it (#2)."""
    rec, signal = Recorder(), Signal(use_caching=True)
    signal.connect(rec.sync("a"))
    signal.connect(rec.sync("b"), sender=Thing)
    saved = signal.receivers
    signal.receivers = []
    assert signal.send(Thing) == []
    signal.connect(rec.sync("during"))
    signal.receivers += saved
    with signal.lock:
        signal.sender_receivers_cache.clear()
    assert [name for name, _ in names(signal.send(Thing))] == ["during", "a", "b"]


def test_connect_returns_none(weak: bool) -> None:
    """``connect`` returns ``None``, unlike blinker's (#4)."""
    rec = Recorder()
    assert Signal().connect(rec.sync("a"), weak=weak) is None  # type: ignore[func-returns-value]


def test_connection_order_is_kept(sender: Any, weak: bool) -> None:
    """Receivers are called in the order they were connected (#20)."""
    rec, signal = Recorder(), Signal()
    for name in ("c", "a", "d", "b"):
        signal.connect(rec.sync(name), sender=sender, weak=weak)
    signal.send(sender)
    assert rec.calls == ["c", "a", "d", "b"]


def test_same_receiver_and_sender_connects_once(sender: Any, weak: bool) -> None:
    """Connecting one receiver for one sender repeatedly yields one connection (#7)."""
    rec, signal = Recorder(), Signal()
    a = rec.sync("a")
    for _ in range(6):
        signal.connect(a, sender=sender, weak=weak)
    assert len(signal.receivers) == 1
    signal.send(sender)
    assert rec.calls == ["a"]


def test_duplicate_keeps_first_place_and_strength(specific_sender: Any) -> None:
    """A duplicate connect is ignored: the first connection keeps its place and weak flag (#7)."""
    rec, signal = Recorder(), Signal()
    a, b = rec.sync("a"), rec.sync("b")
    signal.connect(a, sender=specific_sender, weak=True)
    signal.connect(b, sender=specific_sender)
    signal.connect(a, sender=specific_sender, weak=False)
    signal.send(specific_sender)
    assert rec.calls == ["a", "b"]
    assert [info.weak for info in signal.live_receivers()] == [True, True]


def test_same_receiver_two_senders_connects_twice(specific_sender: Any) -> None:
    """One receiver connected for two different senders makes two connections (#7)."""
    rec, signal = Recorder(), Signal()
    a = rec.sync("a")
    other = Thing()
    signal.connect(a, sender=specific_sender)
    signal.connect(a, sender=other)
    assert len(signal.receivers) == 2
    signal.send(specific_sender)
    signal.send(other)
    assert rec.calls == ["a", "a"]


def test_receiver_for_any_sender_and_specific_sender_is_called_twice(
    specific_sender: Any,
) -> None:
    """A receiver connected for ``None`` and for a sender is called twice by that sender (#20)."""
    rec, signal = Recorder(), Signal()
    a = rec.sync("a")
    signal.connect(a)
    signal.connect(a, sender=specific_sender)
    assert names(signal.send(specific_sender)) == [("a", "a-result"), ("a", "a-result")]
    assert names(signal.send(object())) == [("a", "a-result")]


def test_method_bound_to_two_instances_connects_twice(weak: bool) -> None:
    """The same method bound to two instances makes two connections (#6, #7)."""
    signal = Signal()
    first, second = Thing(), Thing()
    signal.connect(first.method, weak=weak)
    signal.connect(second.method, weak=weak)
    signal.connect(first.method, weak=weak)
    responses = signal.send(None)
    assert [getattr(r, "__self__", None) for r, _ in responses] == [first, second]


def test_dispatch_uid_deduplicates_distinct_receivers(sender: Any, weak: bool) -> None:
    """Two receivers with one ``dispatch_uid`` and sender make one connection, the first (#7)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"), sender=sender, weak=weak, dispatch_uid="uid")
    signal.connect(rec.sync("b"), sender=sender, weak=weak, dispatch_uid="uid")
    signal.send(sender)
    assert rec.calls == ["a"]


def test_same_dispatch_uid_two_senders_connects_twice(specific_sender: Any) -> None:
    """One ``dispatch_uid`` used with two different senders makes two connections (#7)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"), sender=specific_sender, dispatch_uid="uid")
    signal.connect(rec.sync("b"), sender=None, dispatch_uid="uid")
    signal.send(specific_sender)
    assert rec.calls == ["a", "b"]


@pytest.mark.parametrize("uid", [0, "", None, False], ids=repr)
def test_falsy_dispatch_uid_means_no_uid(uid: object, weak: bool) -> None:
    """A falsy ``dispatch_uid`` is treated as none: the receiver's identity is the key (#6)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"), weak=weak, dispatch_uid=uid)
    signal.connect(rec.sync("b"), weak=weak, dispatch_uid=uid)
    signal.send(None)
    assert rec.calls == ["a", "b"]
    assert signal.disconnect(rec.receivers["a"]) is True
    assert [info.dispatch_uid for info in signal.live_receivers()] == [None]


def test_disconnect_by_uid_only(sender: Any, weak: bool) -> None:
    """A uid connection is removed by its uid, the receiver argument being ignored (#14)."""
    rec, signal = Recorder(), Signal()
    a, b = rec.sync("a"), rec.sync("b")
    signal.connect(a, sender=sender, weak=weak, dispatch_uid="uid")
    assert signal.disconnect(a, sender=sender) is False
    assert signal.disconnect(b, sender=sender, dispatch_uid="uid") is True
    assert signal.receivers == []


def test_disconnect_returns_whether_removed(sender: Any, weak: bool) -> None:
    """``disconnect`` returns ``True`` when it removed a connection, else ``False`` (#15)."""
    rec, signal = Recorder(), Signal()
    a = rec.sync("a")
    assert signal.disconnect(a, sender=sender) is False
    signal.connect(a, sender=sender, weak=weak)
    assert signal.disconnect(a, sender=sender) is True
    assert signal.disconnect(a, sender=sender) is False
    assert signal.send(sender) == []


def test_disconnect_needs_the_connect_sender(specific_sender: Any) -> None:
    """``disconnect`` removes only the connection made for the sender it is given (#13)."""
    rec, signal = Recorder(), Signal()
    a = rec.sync("a")
    signal.connect(a, sender=specific_sender)
    assert signal.disconnect(a) is False
    assert signal.disconnect(a, sender=object()) is False
    assert signal.disconnect(a, sender=specific_sender) is True


def test_disconnect_removes_only_one_of_several(specific_sender: Any) -> None:
    """Disconnecting one connection leaves the receiver's other connections in place (#15)."""
    rec, signal = Recorder(), Signal()
    a, b = rec.sync("a"), rec.sync("b")
    signal.connect(a)
    signal.connect(b)
    signal.connect(a, sender=specific_sender)
    assert signal.disconnect(a) is True
    signal.send(specific_sender)
    assert rec.calls == ["b", "a"]


def test_disconnect_bound_method_with_a_new_bound_method(weak: bool) -> None:
    """A bound method is disconnected with another bound-method object of the same pair (#6)."""
    signal, thing = Signal(), Thing()
    signal.connect(thing.method, weak=weak)
    assert signal.disconnect(thing.method) is True
    assert signal.send(None) == []


def test_not_callable_is_rejected(weak: bool) -> None:
    """A non-callable receiver raises ``InvalidReceiverError``, a ``TypeError`` (#5)."""
    signal = Signal()
    with pytest.raises(InvalidReceiverError, match="callable") as info:
        signal.connect("not callable", weak=weak)  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, tidings.TidingsError)
    assert signal.receivers == []


def _positional(sender: Any) -> None:
    """A receiver that lacks ``**kwargs``."""


def _keyword_only(*, signal: Any, sender: Any) -> None:
    """A receiver that names the keywords but lacks ``**kwargs``."""


@pytest.mark.parametrize("bad", [_positional, _keyword_only], ids=["positional", "keyword-only"])
def test_receiver_without_kwargs_is_rejected(bad: Any, weak: bool) -> None:
    """A receiver without ``**kwargs`` raises ``ReceiverSignatureError`` naming it (#5)."""
    signal = Signal()
    with pytest.raises(ReceiverSignatureError, match=bad.__name__) as info:
        signal.connect(bad, weak=weak)
    assert isinstance(info.value, ValueError)
    assert signal.receivers == []


def test_non_weakrefable_callable_with_weak_is_rejected() -> None:
    """``weak=True`` with a callable that has no weak references raises a naming TypeError (#9)."""
    signal, slotted = Signal(), Slotted("unreferenceable")
    with pytest.raises(InvalidReceiverError, match=r"unreferenceable|Slotted"):
        signal.connect(slotted)
    assert signal.receivers == []
    signal.connect(slotted, weak=False)
    assert names(signal.send(None)) == [(repr(slotted), "unreferenceable")]


async def _async_receiver(**kwargs: Any) -> str:
    """An async receiver for validation tests."""
    return "async"


def test_inline_async_receiver_is_rejected() -> None:
    """``inline=True`` applies only to sync receivers; with an async one it is an error."""
    signal = Signal()
    with pytest.raises(InvalidReceiverError, match="_async_receiver"):
        signal.connect(_async_receiver, inline=True)
    assert signal.receivers == []


def test_is_async_sees_partials_and_markers() -> None:
    """``is_async`` is decided at connect and honours partials and coroutine markers (#8)."""

    def marked(**kwargs: Any) -> Any:
        return _async_receiver(**kwargs)

    markcoroutinefunction(marked)
    partial = functools.partial(_async_receiver, extra=1)
    signal = Signal()
    signal.connect(marked)
    signal.connect(partial)
    assert [info.is_async for info in signal.live_receivers()] == [True, True]
    assert [value for _, value in signal.send(None)] == ["async", "async"]


class _AsyncCallable:
    """An instance whose ``__call__`` is ``async def`` but which is not marked as such."""

    async def __call__(self, **kwargs: Any) -> str:
        return "called"


def test_unmarked_async_callable_instance_is_sync() -> None:
    """An unmarked instance with an async ``__call__`` is sync: send returns its coroutine (#8)."""
    signal, instance = Signal(), _AsyncCallable()
    signal.connect(instance)
    [(_, coroutine)] = signal.send(None)
    assert inspect.iscoroutine(coroutine)
    assert asyncio.run(coroutine) == "called"


def test_receiver_decorator_one_signal() -> None:
    """``@receiver(signal, **kwargs)`` connects with those arguments, returns the function (#39)."""
    signal, thing, calls = Signal(), Thing(), []

    def handler(**kwargs: Any) -> None:
        calls.append(kwargs["sender"])

    assert receiver(signal, sender=thing, dispatch_uid="h")(handler) is handler
    signal.send(thing)
    signal.send(None)
    assert calls == [thing]
    assert signal.disconnect(sender=thing, dispatch_uid="h") is True


@pytest.mark.parametrize("container", [list, tuple])
def test_receiver_decorator_many_signals(container: type) -> None:
    """``@receiver([a, b])`` connects the function to each signal of a list or tuple (#39)."""
    first, second, calls = Signal(), Signal(), []

    @receiver(container([first, second]))
    def handler(signal: Signal, **kwargs: Any) -> None:
        calls.append(signal)

    first.send(None)
    second.send(None)
    assert calls == [first, second]


def test_connect_and_disconnect_take_django_positional_arguments() -> None:
    """``connect(receiver, sender, weak, dispatch_uid)`` and ``disconnect`` take positionals."""
    rec, signal, thing = Recorder(), Signal(), Thing()
    signal.connect(rec.sync("a"), thing, False, "uid")
    [info] = signal.live_receivers()
    assert (info.sender, info.weak, info.dispatch_uid) == (thing, False, "uid")
    assert signal.disconnect(None, thing, "uid") is True


class _SlottedWithMethod:
    """An object without weak references that has a method."""

    __slots__ = ()

    def handle(self, **kwargs: Any) -> str:
        return "handled"


def test_weak_bound_method_of_unreferenceable_object_is_rejected() -> None:
    """``weak=True`` with a method of an object without weak references is an error (#9)."""
    signal, owner = Signal(), _SlottedWithMethod()
    with pytest.raises(InvalidReceiverError, match=r"handle|_SlottedWithMethod"):
        signal.connect(owner.handle)
    assert signal.receivers == []
    signal.connect(owner.handle, weak=False)
    assert [value for _, value in signal.send(None)] == ["handled"]


def test_receiver_decorator_rejects_non_signals() -> None:
    """``@receiver`` given something other than signals raises ``TypeError`` at once."""
    with pytest.raises(TypeError, match="Signal"):
        receiver("not a signal")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Signal"):
        receiver([Signal(), object()])  # type: ignore[list-item]


def test_named_signal_repr_and_errors_name_it() -> None:
    """A signal's optional name appears in its repr and in the errors it raises (extension)."""
    rec, signal = Recorder(), Signal(name="order_paid")
    assert "order_paid" in repr(signal)
    with pytest.raises(ReceiverSignatureError) as info:
        signal.connect(_positional)
    assert "order_paid" in str(info.value)
    assert "_positional" in str(info.value)
    signal.connect(rec.sync("a"))
    with pytest.raises(TypeError, match="order_paid"):
        signal.send(None, signal=1)
