"""Thread hammer tests: many barrier-started threads connecting, disconnecting and sending.

They check that no connection is lost or duplicated, that the final state is exactly the
expected one, that every send returns a consistent result, and that nothing deadlocks (every
thread is joined with a timeout). The default sizes take well under a second each; the
``stress`` variants repeat them at larger sizes and are skipped unless selected with
``pytest -m stress``.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.core._support import Thing, run_threads
from tidings import Signal

pytestmark = pytest.mark.usefixtures("switch_often")


class Named:
    """A callable receiver with a readable name; returns it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, **kwargs: Any) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<{self.name}>"


def _connect_disconnect(threads: int, rounds: int, per_round: int) -> None:
    signal = Signal()
    senders = [None, Thing(), Thing, object()]
    receivers = {t: [Named(f"t{t}-r{i}") for i in range(per_round)] for t in range(threads)}
    expected: dict[int, list[tuple[Named, Any]]] = {}

    def worker(t: int) -> Callable[[], None]:
        def work() -> None:
            mine = receivers[t]
            sender = senders[t % len(senders)]
            for round_ in range(rounds):
                for receiver in mine:
                    signal.connect(receiver, sender=sender, weak=round_ % 2 == 0)
                    signal.connect(receiver, sender=sender)  # a duplicate: ignored
                for receiver in mine[::2]:
                    assert signal.disconnect(receiver, sender=sender) is True
                    assert signal.disconnect(receiver, sender=sender) is False
                if round_ < rounds - 1:
                    for receiver in mine[1::2]:
                        assert signal.disconnect(receiver, sender=sender) is True
            expected[t] = [(receiver, sender) for receiver in mine[1::2]]

        return work

    run_threads([worker(t) for t in range(threads)])
    live = [(info.receiver, info.sender) for info in signal.live_receivers()]
    assert len(live) == len(set(map(id, (r for r, _ in live))))
    for t in range(threads):
        # Each thread's survivors are there, exactly once, in that thread's connection order.
        assert [
            pair for pair in live if getattr(pair[0], "name", "").startswith(f"t{t}-")
        ] == expected[t]
    assert len(live) == sum(len(pairs) for pairs in expected.values())
    assert len(signal.receivers) == len(live)


def test_concurrent_connect_disconnect_loses_and_duplicates_nothing() -> None:
    """Threads connecting and disconnecting their receivers leave exactly the expected set."""
    _connect_disconnect(threads=8, rounds=20, per_round=10)


@pytest.mark.stress
def test_concurrent_connect_disconnect_stress() -> None:
    """The connect/disconnect hammer at a larger size."""
    for _ in range(3):
        _connect_disconnect(threads=16, rounds=40, per_round=20)


def _send_while_churning(senders_count: int, churners: int, sends: int) -> None:
    signal = Signal()
    stable = [Named(f"stable-{i}") for i in range(5)]
    for receiver in stable:
        signal.connect(receiver)
    transient = [[Named(f"c{c}-{i}") for i in range(10)] for c in range(churners)]
    stop = threading.Event()
    results: list[list[str]] = []

    def churn(c: int) -> Callable[[], None]:
        def work() -> None:
            while not stop.is_set():
                for receiver in transient[c]:
                    signal.connect(receiver)
                for receiver in transient[c]:
                    signal.disconnect(receiver)

        return work

    def send() -> None:
        try:
            for _ in range(sends):
                response = signal.send(None)
                results.append([value for _, value in response])
        finally:
            stop.set()

    run_threads([churn(c) for c in range(churners)] + [send for _ in range(senders_count)])
    assert len(results) == senders_count * sends
    stable_names = [r.name for r in stable]
    for names in results:
        # The stable receivers come first, in order; each churner's receivers appear at most
        # once and in that churner's connection order.
        assert names[:5] == stable_names
        assert len(names) == len(set(names))
        for c in range(churners):
            own = [n for n in names if n.startswith(f"c{c}-")]
            assert own == sorted(own, key=lambda n: int(n.split("-")[1]))
    assert [info.receiver for info in signal.live_receivers()] == stable


def test_sends_during_churn_return_consistent_snapshots() -> None:
    """Sends racing with connects and disconnects each return one consistent snapshot."""
    _send_while_churning(senders_count=4, churners=4, sends=1000)


@pytest.mark.stress
def test_sends_during_churn_stress() -> None:
    """The send/churn hammer at a larger size."""
    _send_while_churning(senders_count=8, churners=8, sends=10_000)


def _reentrant(threads: int, sends: int) -> None:
    signal = Signal()
    counter_lock = threading.Lock()
    totals = {"global": 0, "ping": 0}
    ping = Thing()

    def count_all(sender: Any, **kwargs: Any) -> None:
        with counter_lock:
            totals["global" if sender is not ping else "ping"] += 1

    signal.connect(count_all)
    owners = [Thing() for _ in range(threads)]
    helpers = [Named(f"helper-{t}") for t in range(threads)]

    def make_toggler(t: int) -> Callable[..., str]:
        def toggler(sender: Any, **kwargs: Any) -> str:
            # Connects its helper if it was not connected, disconnects it otherwise, and sends
            # on the same signal: all from inside a send.
            if not signal.disconnect(helpers[t], sender=sender):
                signal.connect(helpers[t], sender=sender)
            signal.send(ping)
            return f"toggler-{t}"

        return toggler

    togglers = [make_toggler(t) for t in range(threads)]
    for t in range(threads):
        signal.connect(togglers[t], sender=owners[t])
    lengths: dict[int, list[int]] = {t: [] for t in range(threads)}

    def worker(t: int) -> Callable[[], None]:
        def work() -> None:
            for _ in range(sends):
                lengths[t].append(len(signal.send(owners[t])))

        return work

    run_threads([worker(t) for t in range(threads)])
    for t in range(threads):
        # count_all + toggler, plus the helper every second send.
        assert lengths[t] == [2, 3] * (sends // 2) + [2] * (sends % 2)
        connected = signal.has_listeners(owners[t]) and any(
            info.receiver is helpers[t] for info in signal.live_receivers(owners[t])
        )
        assert connected == (sends % 2 == 1)
    assert totals == {"global": threads * sends, "ping": threads * sends}


def test_receivers_connect_disconnect_and_send_from_threads() -> None:
    """Receivers that connect, disconnect and send on their own signal, in many threads."""
    _reentrant(threads=8, sends=101)


@pytest.mark.stress
def test_receivers_mutating_from_threads_stress() -> None:
    """The re-entrant hammer at a larger size."""
    _reentrant(threads=16, sends=5001)


@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_no_lock_is_held_while_a_receiver_runs(method: str) -> None:
    """A receiver that waits for another thread to connect, disconnect and send on its own
    signal is not waiting on a lock its send holds."""
    signal = Signal()
    finished = threading.Event()

    def other(sender: Any, **kwargs: Any) -> str:
        return "other"

    def elsewhere() -> None:
        signal.connect(other, weak=False)
        assert [r for r, _ in signal.send(None)] == [waiting, other]
        signal.disconnect(other)
        finished.set()

    def waiting(sender: Any, **kwargs: Any) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False  # the other thread's send: nothing to wait for
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join(10)
        return finished.is_set()

    signal.connect(waiting, weak=False)
    assert getattr(signal, method)(None) == [(waiting, True)]


def test_weak_receivers_dying_while_others_send() -> None:
    """Weak receivers created and dropped in threads never break concurrent sends."""
    signal = Signal()
    stable = Named("stable")
    signal.connect(stable)
    stop = threading.Event()
    seen: list[list[str]] = []

    def churn() -> None:
        while not stop.is_set():
            for _ in range(20):
                signal.connect(Named("ephemeral"))  # weak and unreferenced: dies at once
            gc.collect(0)

    def send() -> None:
        try:
            for _ in range(300):
                seen.append([value for _, value in signal.send_robust(None)])
        finally:
            stop.set()

    run_threads([churn, churn, send, send])
    assert all(names[0] == "stable" for names in seen)
    assert all(set(names) <= {"stable", "ephemeral"} for names in seen)
    assert not any(isinstance(value, Exception) for names in seen for value in names)
    gc.collect()
    assert signal.has_listeners()  # purges the dead connections (lazily, like Django)
    assert [info.receiver for info in signal.live_receivers()] == [stable]
    assert len(signal.receivers) == 1


def test_asend_from_many_threads() -> None:
    """Threads each running their own event loop can ``asend`` on one signal at once."""
    signal = Signal()
    counts: list[int] = []
    lock = threading.Lock()

    def sync_receiver(**kwargs: Any) -> str:
        return "sync"

    async def async_receiver(**kwargs: Any) -> str:
        await asyncio.sleep(0)
        return "async"

    signal.connect(sync_receiver)
    signal.connect(async_receiver)

    def work() -> None:
        async def main() -> None:
            for _ in range(20):
                responses = await signal.asend(None)
                assert [value for _, value in responses] == ["sync", "async"]
                with lock:
                    counts.append(1)

        asyncio.run(main())

    run_threads([work for _ in range(6)])
    assert len(counts) == 6 * 20
