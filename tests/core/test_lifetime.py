"""Lifetime: weak and strong receivers, dead receivers and senders, lazy purging.

Statement numbers (#n) refer to the numbered list in docs/semantics.md.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest

from tests.core._support import Bulky, Recorder, Thing, make_sender, names
from tidings import Signal, UncalledReceiverWarning


def test_weak_function_receiver_dies(sender: Any) -> None:
    """A weakly connected function nobody else holds is never called again (#9)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("keep"), sender=sender)
    signal.connect(rec.sync("gone"), sender=sender)
    rec.forget("gone")
    gc.collect()
    assert names(signal.send(sender)) == [("keep", "keep-result")]
    assert len(signal.receivers) == 1


def test_unheld_lambda_is_never_called() -> None:
    """A lambda connected weakly and held by nobody disappears at once, with a warning (#9)."""
    signal, calls = Signal(), []
    signal.connect(lambda **kwargs: calls.append(1))
    gc.collect()
    with pytest.warns(UncalledReceiverWarning, match=r"<lambda> was connected to"):
        assert signal.send(None) == []
    assert not signal.has_listeners()
    assert calls == []


def test_strong_receiver_survives(sender: Any) -> None:
    """A receiver connected with ``weak=False`` is kept alive by the signal (#10)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("kept"), sender=sender, weak=False)
    rec.forget("kept")
    gc.collect()
    assert names(signal.send(sender)) == [("kept", "kept-result")]


def test_weak_bound_method_dies_with_its_object(sender: Any) -> None:
    """A weakly connected bound method dies with its object, not with the method object (#9)."""
    signal = Signal()
    thing = Thing()
    signal.connect(thing.method, sender=sender)
    gc.collect()
    assert [value for _, value in signal.send(sender)] == ["method"]
    ref = weakref.ref(thing)
    del thing
    gc.collect()
    assert ref() is None
    assert signal.send(sender) == []
    assert not signal.has_listeners(sender)
    assert signal.receivers == []


def test_strong_bound_method_keeps_its_object(sender: Any) -> None:
    """A bound method connected with ``weak=False`` keeps its object alive (#10)."""
    signal = Signal()
    thing = Thing()
    ref = weakref.ref(thing)
    signal.connect(thing.method, sender=sender, weak=False)
    del thing
    gc.collect()
    assert ref() is not None
    assert [value for _, value in signal.send(sender)] == ["method"]
    assert signal.disconnect(ref().method, sender=sender) is True  # type: ignore[union-attr]
    gc.collect()
    assert ref() is None


def test_dead_receivers_purged_by_has_listeners(weak: bool) -> None:
    """Dead connections are purged lazily; ``has_listeners`` leaves a clean list (#38, #40)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"))
    signal.connect(rec.sync("b"), weak=weak)
    rec.forget("a")
    gc.collect()
    assert signal.has_listeners()
    assert [info.receiver for info in signal.live_receivers()] == [rec.receivers["b"]]
    assert len(signal.receivers) == 1


def test_disconnect_leaves_clean_list_after_gc() -> None:
    """Explicit disconnects plus garbage-collected receivers leave ``receivers`` empty (#40)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"))
    signal.connect(rec.sync("b"))
    signal.connect(rec.sync("c"), weak=False)
    signal.disconnect(rec.receivers["a"])
    signal.disconnect(rec.receivers["c"])
    rec.forget("b")
    gc.collect()
    assert not signal.has_listeners()
    assert signal.receivers == []


def test_weak_receiver_may_reconnect_after_death() -> None:
    """After a receiver dies, a new one at the same address connects normally (#7, #40)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("old"))
    rec.forget("old")
    gc.collect()
    fresh = rec.sync("fresh")
    signal.connect(fresh)
    assert names(signal.send(None)) == [("fresh", "fresh-result")]


@pytest.mark.parametrize("kind", ["class", "instance", "bound-method"])
def test_dead_sender_connections_are_purged(kind: str, weak: bool) -> None:
    """When a weakly referenceable sender dies, its connections are purged (#11)."""
    rec, signal = Recorder(), Signal()
    sender = make_sender(kind)
    owner = sender.__self__ if kind == "bound-method" else sender
    ref = weakref.ref(owner)
    signal.connect(rec.sync("a"), sender=sender, weak=weak)
    signal.connect(rec.sync("any"), weak=weak)
    del sender, owner
    gc.collect()
    assert ref() is None
    assert signal.has_listeners()
    assert [info.receiver for info in signal.live_receivers()] == [rec.receivers["any"]]
    assert len(signal.receivers) == 1


def test_dead_sender_releases_strong_receiver() -> None:
    """A strong receiver connected only for a dead sender is released with the connection (#11)."""
    signal, sender = Signal(), Thing()
    receiver_owner = Thing()
    ref = weakref.ref(receiver_owner)
    signal.connect(receiver_owner.method, sender=sender, weak=False)
    del receiver_owner, sender
    gc.collect()
    signal.has_listeners()
    gc.collect()
    assert ref() is None


def _reuse_dead_sender_address(signal: Signal, rec: Recorder, kind: str, attempt: int) -> bool:
    """Connect for a new sender, let it die, then probe new objects; return if one reused its id."""
    owner = Bulky()
    sender = owner.method if kind == "bound-method" else owner
    old_id = id(owner)
    ref = weakref.ref(owner)
    signal.connect(rec.sync(f"old-{attempt}"), sender=sender)
    del sender, owner
    gc.collect()
    assert ref() is None
    # One of these new objects almost always sits at the old address; every one must be clean.
    candidates = [Bulky() for _ in range(5)]
    for candidate in candidates:
        probe = candidate.method if kind == "bound-method" else candidate
        assert not signal.has_listeners(probe)
        assert signal.send(probe) == []
        assert signal.send_robust(probe) == []
    return old_id in {id(c) for c in candidates}


@pytest.mark.parametrize("kind", ["instance", "bound-method"])
def test_new_sender_at_dead_senders_address_inherits_nothing(kind: str) -> None:
    """A new object reusing a dead sender's ``id()`` reaches none of its receivers (#11)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("unrelated"), sender=Thing)
    # Most attempts reuse the address (CPython's allocator); try until one did, boundedly.
    attempts = 0
    while attempts < 200:
        attempts += 1
        if _reuse_dead_sender_address(signal, rec, kind, attempts):
            break
    assert attempts < 200, "no new object reused a dead sender's address"
    assert rec.calls == []
    assert len(rec.receivers) == attempts + 1  # the receivers live on: only the senders died
    assert [info.receiver for info in signal.live_receivers()] == [rec.receivers["unrelated"]]
    assert len(signal.receivers) == 1


def test_non_weakrefable_sender_is_held_while_connected() -> None:
    """A sender without weak references is held while connected, so its id stays its own (#11)."""
    rec, signal = Recorder(), Signal()
    sender = object()
    signal.connect(rec.sync("a"), sender=sender)
    del sender
    gc.collect()
    [info] = signal.live_receivers()
    assert type(info.sender) is object
    assert names(signal.send(info.sender)) == [("a", "a-result")]
    assert signal.disconnect(rec.receivers["a"], sender=info.sender) is True


class _Unreferenceable:
    """A sender without weak references that reports when it is freed."""

    __slots__ = ("freed",)

    def __init__(self, freed: list[bool]) -> None:
        self.freed = freed

    def __del__(self) -> None:
        self.freed.append(True)


@pytest.mark.parametrize("how", ["disconnect", "receiver-dies"])
def test_strongly_held_sender_is_released_with_its_connections(how: str) -> None:
    """A sender held because it has no weak references is freed once its connections go."""
    rec, signal = Recorder(), Signal()
    freed: list[bool] = []
    sender = _Unreferenceable(freed)
    signal.connect(rec.sync("a"), sender=sender)
    assert signal.has_listeners(sender)
    if how == "disconnect":
        assert signal.disconnect(rec.receivers["a"], sender=sender)
    else:
        rec.forget("a")
    del sender
    gc.collect()
    signal.has_listeners()  # purges dead connections
    gc.collect()
    assert freed == [True]
