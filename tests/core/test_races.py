"""Sender death and ``id()`` reuse racing with purges, and the cost of per-sender connections.

A sender's ``id()`` can be taken by a new object as soon as the sender has died. Whatever the
interleaving of that death, the purge of its connections (possibly running in another thread)
and a send from the newcomer, the newcomer must reach none of the dead sender's receivers. The
bounded hammer runs in ``make test``; the ``stress`` variant runs it much longer.

The cost tests count plan builds instead of timing: connecting, disconnecting or losing a
per-object sender must rebuild that sender's plan only, whatever the number of other senders.
"""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Callable
from typing import Any

import pytest

import tidings._index
from tests.core._support import Bulky, run_threads
from tidings import Signal


def _old(**kwargs: Any) -> str:
    """The receiver connected for the senders that die."""
    return "old"


def _filler(**kwargs: Any) -> str:
    """The receiver connected for the senders that stay alive."""
    return "filler"


def _as_sender(owner: Bulky, kind: str) -> Any:
    return owner.method if kind == "bound-method" else owner


@pytest.mark.parametrize("kind", ["instance", "bound-method"])
def test_stale_plan_of_a_dead_sender_is_never_used_for_a_newcomer(kind: str) -> None:
    """With the dead flag lowered (as by a concurrent purge), a reused id reaches nothing."""
    signal = Signal(name="reuse")
    keep = Bulky()
    signal.connect(_filler, sender=_as_sender(keep, kind))
    reused = attempts = 0
    while reused < 3 and attempts < 200:
        attempts += 1
        owner = Bulky()
        signal.connect(_old, sender=_as_sender(owner, kind))
        old_id, ref = id(owner), weakref.ref(owner)
        del owner
        assert ref() is None
        # What another thread's purge did before it installed new plans: the flag is down,
        # the dead sender's plan is still in place.
        signal._dead = False
        newcomers = [Bulky() for _ in range(3)]
        for newcomer in newcomers:
            probe = _as_sender(newcomer, kind)
            assert signal.send(probe) == []
            assert signal.send_robust(probe) == []
            assert not signal.has_listeners(probe)
            assert signal.live_receivers(probe) == []
        reused += old_id in {id(n) for n in newcomers}
        signal._dead = True  # let the next operation purge
    assert reused, "no new object reused a dead sender's id(): the test proved nothing"
    assert [r for r, _ in signal.send(_as_sender(keep, kind))] == [_filler]


def _hammer(fillers: int, tries: int) -> tuple[int, int, int]:
    """Senders die and newcomers reuse their ids while another thread keeps purging.

    Returns:
        (tries, how many newcomers reused a dead sender's id, wrong deliveries).
    """
    signal = Signal(name="hammer")
    alive = [Bulky() for _ in range(fillers)]
    for filler in alive:
        signal.connect(_filler, sender=filler)
    probe = object()
    done = threading.Event()
    counts = {"tries": 0, "reused": 0, "wrong": 0}

    def purge() -> None:
        while not done.is_set():
            signal.has_listeners(probe)  # purges whenever a sender died

    def churn() -> None:
        try:
            for _ in range(tries):
                owner = Bulky()
                signal.connect(_old, sender=owner)
                old_id = id(owner)
                del owner
                newcomer = Bulky()
                if id(newcomer) == old_id:
                    counts["reused"] += 1
                    counts["wrong"] += len(signal.send(newcomer))
                    counts["wrong"] += signal.has_listeners(newcomer)
                counts["tries"] += 1
                del newcomer
        finally:
            done.set()

    run_threads([purge, churn])
    assert [r for r, _ in signal.send(alive[0])] == [_filler]
    return counts["tries"], counts["reused"], counts["wrong"]


@pytest.mark.usefixtures("switch_often")
def test_newcomers_reusing_dead_senders_ids_under_concurrent_purges() -> None:
    """A thread purging dead senders never lets a newcomer reach a dead sender's receivers."""
    tries, reused, wrong = _hammer(fillers=1000, tries=300)
    assert (tries, wrong) == (300, 0), f"tries={tries} reused={reused} wrong={wrong}"
    assert reused > 0, "no id was reused: the hammer proved nothing"


@pytest.mark.stress
@pytest.mark.usefixtures("switch_often")
def test_newcomers_reusing_dead_senders_ids_stress() -> None:
    """The id-reuse hammer, long and with many live senders."""
    tries, reused, wrong = _hammer(fillers=3000, tries=20_000)
    assert (tries, wrong) == (20_000, 0), f"tries={tries} reused={reused} wrong={wrong}"
    assert reused > 0


class _PlanCounter:
    """Counts the plans the dispatcher builds."""

    def __init__(self) -> None:
        self.builds = 0

    def wrap(self, make_plan: Callable[..., Any]) -> Callable[..., Any]:
        def counting(*args: Any, **kwargs: Any) -> Any:
            self.builds += 1
            return make_plan(*args, **kwargs)

        return counting


@pytest.fixture
def plans(monkeypatch: pytest.MonkeyPatch) -> _PlanCounter:
    """Count every plan the dispatcher builds (a sender's, or the one for every other sender)."""
    counter = _PlanCounter()
    for name in ("make_plan", "sender_plan"):
        monkeypatch.setattr(tidings._index, name, counter.wrap(getattr(tidings._index, name)))
    return counter


def test_per_sender_connect_builds_one_plan_each(plans: _PlanCounter) -> None:
    """Connecting a receiver for each of N senders builds N plans in all, not N squared."""
    signal = Signal()
    senders = [Bulky() for _ in range(500)]
    signal.connect(_filler)  # an any-sender receiver: merged into every sender's plan
    plans.builds = 0
    for sender in senders:
        signal.connect(_old, sender=sender)
    assert plans.builds == len(senders)
    assert [r for r, _ in signal.send(senders[-1])] == [_filler, _old]


def test_sender_death_rebuilds_only_its_own_plan(plans: _PlanCounter) -> None:
    """After one of N senders dies, the next send rebuilds no plan but that sender's."""
    signal = Signal()
    senders = [Bulky() for _ in range(500)]
    for sender in senders:
        signal.connect(_old, sender=sender)
    ref = weakref.ref(senders[250])
    plans.builds = 0
    del senders[250]
    gc.collect()
    assert ref() is None
    assert signal.send(object()) == []
    assert plans.builds == 0  # its plan is dropped, nothing is rebuilt
    assert len(signal.receivers) == 499
    assert [r for r, _ in signal.send(senders[0])] == [_old]


def test_per_sender_disconnect_rebuilds_only_its_own_plan(plans: _PlanCounter) -> None:
    """Disconnecting one of two receivers of one of N senders rebuilds that sender's plan only."""
    signal = Signal()
    senders = [Bulky() for _ in range(500)]
    for sender in senders:
        signal.connect(_old, sender=sender)
    signal.connect(_filler, sender=senders[7])
    plans.builds = 0
    assert signal.disconnect(_old, sender=senders[7])
    assert plans.builds == 1
    assert [r for r, _ in signal.send(senders[7])] == [_filler]
