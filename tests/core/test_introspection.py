"""Introspection: ``has_listeners``, ``live_receivers`` and the ``receivers`` round trip.

Statement numbers (#n) refer to the numbered list in docs/semantics.md.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest

from tests.core._support import Recorder, Thing, names
from tidings import ALL_SENDERS, ReceiverInfo, Signal


def test_has_listeners_default_counts_only_any_sender(specific_sender: Any, weak: bool) -> None:
    """``has_listeners()`` without a sender counts only receivers for any sender (#38)."""
    rec, signal = Recorder(), Signal()
    assert not signal.has_listeners()
    signal.connect(rec.sync("a"), sender=specific_sender, weak=weak)
    assert not signal.has_listeners()
    assert signal.has_listeners(specific_sender)
    assert not signal.has_listeners(object())
    signal.connect(rec.sync("b"), weak=weak)
    assert signal.has_listeners()
    assert signal.has_listeners(object())


def test_has_listeners_counts_async_receivers(sender: Any) -> None:
    """An async receiver alone makes ``has_listeners`` true (#38)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.asynchronous("a"), sender=sender)
    assert signal.has_listeners(sender)


def test_has_listeners_ignores_dead_receivers(sender: Any) -> None:
    """``has_listeners`` is false once the only receiver has died (#38)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"), sender=sender)
    rec.forget("a")
    gc.collect()
    assert not signal.has_listeners(sender)


def test_live_receivers_lists_every_connection(weak: bool) -> None:
    """``live_receivers()`` describes every live connection in connection order."""
    rec, signal, thing = Recorder(), Signal(), Thing()
    a, b, c = rec.sync("a"), rec.asynchronous("b"), rec.sync("c")
    signal.connect(a, weak=weak)
    signal.connect(b, sender=thing, weak=weak, dispatch_uid="uid-b")
    signal.connect(c, sender=Thing, weak=weak, inline=True)
    assert signal.live_receivers() == [
        ReceiverInfo(a, None, weak, None, False, False),
        ReceiverInfo(b, thing, weak, "uid-b", True, False),
        ReceiverInfo(c, Thing, weak, None, False, True),
    ]
    assert signal.live_receivers(ALL_SENDERS) == signal.live_receivers()


def test_live_receivers_for_sender_in_call_order(sender: Any, weak: bool) -> None:
    """``live_receivers(sender)`` lists what a send from ``sender`` calls, in call order."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.asynchronous("async-any"), weak=weak)
    signal.connect(rec.sync("sync-specific"), sender=sender, weak=weak)
    signal.connect(rec.sync("elsewhere"), sender=object(), weak=weak)
    signal.connect(rec.sync("sync-any"), weak=weak)
    listed = [info.receiver.__name__ for info in signal.live_receivers(sender)]
    assert listed == ["sync-specific", "sync-any", "async-any"]
    assert listed == [name for name, _ in names(signal.send(sender))]


def test_live_receivers_bound_method_and_sender() -> None:
    """A bound method is listed as an equal bound method; a method sender as an equal one."""
    signal, receiver_owner, sender_owner = Signal(), Thing(), Thing()
    signal.connect(receiver_owner.method, sender=sender_owner.method)
    [info] = signal.live_receivers()
    assert info.receiver == receiver_owner.method
    assert info.sender == sender_owner.method
    assert signal.live_receivers(sender_owner.method) == [info]
    assert signal.live_receivers(Thing().method) == []


def test_live_receivers_excludes_dead(weak: bool) -> None:
    """Dead receivers and connections of dead senders are not listed."""
    rec, signal = Recorder(), Signal()
    sender = Thing()
    signal.connect(rec.sync("dies"))
    signal.connect(rec.sync("sender-dies"), sender=sender, weak=weak)
    signal.connect(rec.sync("lives"), weak=weak)
    rec.forget("dies")
    del sender
    gc.collect()
    assert [info.receiver.__name__ for info in signal.live_receivers()] == ["lives"]
    assert [info.receiver.__name__ for info in signal.live_receivers(None)] == ["lives"]


def test_receiver_info_is_immutable() -> None:
    """``ReceiverInfo`` is a frozen record."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"))
    [info] = signal.live_receivers()
    with pytest.raises(AttributeError):
        info.weak = False  # type: ignore[misc]


def test_receivers_round_trip(sender: Any, weak: bool) -> None:
    """Assigning a saved ``receivers`` list back restores the connections in order."""
    rec, signal = Recorder(), Signal()
    for name in "abc":
        signal.connect(rec.sync(name), sender=sender, weak=weak)
    saved = signal.receivers
    assert isinstance(saved, list)
    assert len(saved) == 3
    signal.receivers = []
    assert signal.send(sender) == []
    assert not signal.has_listeners(sender)
    signal.receivers = saved
    assert [name for name, _ in names(signal.send(sender))] == ["a", "b", "c"]
    assert signal.disconnect(rec.receivers["b"], sender=sender) is True
    assert [name for name, _ in names(signal.send(sender))] == ["a", "c"]


def test_restored_receivers_drop_those_that_died_meanwhile() -> None:
    """Connections restored after their receiver died are dead and never called."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"))
    signal.connect(rec.sync("b"))
    saved = signal.receivers
    signal.receivers = []
    rec.forget("a")
    gc.collect()
    signal.receivers = saved
    assert names(signal.send(None)) == [("b", "b-result")]
    assert len(signal.receivers) == 1


def test_receivers_rejects_foreign_entries() -> None:
    """Assigning something other than saved connections to ``receivers`` is a ``TypeError``."""
    signal = Signal()
    with pytest.raises(TypeError, match="receivers"):
        signal.receivers = [("key", lambda **kw: None, False)]  # type: ignore[list-item]
    assert signal.receivers == []


def test_receivers_moved_between_signals_die_cleanly() -> None:
    """Connections assigned to another signal's ``receivers`` are purged there when they die."""
    rec, first, second = Recorder(), Signal(), Signal()
    first.connect(rec.sync("a"))
    first.connect(rec.sync("b"))
    second.receivers = first.receivers
    first.receivers = []
    assert second.has_listeners()
    rec.forget("a")
    rec.forget("b")
    gc.collect()
    assert not second.has_listeners()
    assert second.receivers == []
