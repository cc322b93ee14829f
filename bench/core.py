"""Benchmark of the core dispatcher against django.dispatch, blinker and psygnal.

Every contender sends one keyword argument (``value=1``) from a class sender to trivial
module-level receivers connected for that sender, in one process, interleaved (see
``bench/_timing.py``). The *floor* of a row is the receivers' own cost: a bare loop calling
each matching receiver as ``r(signal=s, sender=x, value=1)``, with no dispatcher and no result
list. Each figure is the best of the rounds, in nanoseconds per send, with its ratio to the
floor of its row. Every contender is checked to call the right receivers before it is timed.

Targets (reported, never asserted: a benchmark is not a test):

* tidings ``send``, compiled and pure, is faster than django.dispatch (with and without
  ``use_caching``) and blinker in every row;
* with no receivers, tidings is no slower than the fastest anchor;
* the compiled ``send`` costs at most 2.0x / 1.4x / 1.25x the floor with 1 / 10 / 100
  receivers, and is faster than psygnal's ``emit`` in every row psygnal has;
* ``asend`` to one sync receiver connected with ``inline=True`` is at least 20 times faster
  than Django's ``asend`` to one sync receiver;
* per-object senders (one receiver connected for each of 10,000 objects): connecting them all
  takes under 0.1 s and is faster than Django, and the worst send right after one of those
  objects died is under 5 ms (its cost must not grow with the number of other senders).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import blinker
import django.dispatch
import psygnal

import tidings
from bench._timing import (
    Batch,
    CpuShare,
    Settings,
    Timing,
    async_statement_batch,
    environment,
    measure,
    print_table,
    statement_batch,
)
from tidings._accel import pure_method

__all__ = ["run"]

FLOOR = "floor"
TIDINGS = "tidings compiled"
TIDINGS_PURE = "tidings pure"
DJANGO = "django"
DJANGO_CACHED = "django cached"
BLINKER = "blinker"
PSYGNAL = "psygnal emit"
PSYGNAL_FAST = "psygnal emit_fast"
SEND_COLUMNS = (FLOOR, TIDINGS, TIDINGS_PURE, DJANGO, DJANGO_CACHED, BLINKER, PSYGNAL, PSYGNAL_FAST)
OURS = (TIDINGS, TIDINGS_PURE)
ROBUST_COLUMNS = (FLOOR, TIDINGS, TIDINGS_PURE)
# The compiled path's targets: at most this many times the floor, by row.
COMPILED_TARGETS = {"1 receiver": 2.0, "10 receivers": 1.4, "100 receivers": 1.25}
# The anchors the targets compare against; emit_fast is shown for reference only, because it
# gives up emit()'s thread safety and re-entrancy handling.
ANCHORS = (DJANGO, DJANGO_CACHED, BLINKER, PSYGNAL)

ASEND_THREAD = "tidings asend"
ASEND_INLINE = "tidings asend inline"
DJANGO_ASEND = "django asend"
ASEND_COLUMNS = (FLOOR, ASEND_THREAD, ASEND_INLINE, DJANGO_ASEND)
INLINE_TARGET = 20.0

POOL_SIZE = 100

# The floor of a row: the receivers' own cost, a bare loop making the calls a send makes.
FLOOR_STATEMENT = "for r in receivers: r(signal=s, sender=Sender, value=1)"


class Sender:
    """The sender of every measured send."""


# Other senders, for the rows where receivers are connected for someone else.
OTHER_SENDERS = tuple(type(f"Other{i}", (), {}) for i in range(POOL_SIZE))


def _dispatch_receiver(number: int) -> Callable[..., Any]:
    # One distinct function per receiver, since connecting the same one twice is a no-op.
    # The shape ``(sender, **kwargs)`` suits django.dispatch, tidings and blinker alike.
    def receiver(sender: Any, **kwargs: Any) -> None:
        return None

    receiver.__qualname__ = receiver.__name__ = f"receiver_{number}"
    return receiver


def _value_receiver(number: int) -> Callable[[int], None]:
    def receiver(value: int) -> None:
        return None

    receiver.__qualname__ = receiver.__name__ = f"value_receiver_{number}"
    return receiver


# Module-level, so weakly connected receivers stay alive for the whole run.
RECEIVERS = tuple(_dispatch_receiver(i) for i in range(POOL_SIZE))
VALUE_RECEIVERS = tuple(_value_receiver(i) for i in range(POOL_SIZE))


async def async_receiver(sender: Any, **kwargs: Any) -> None:
    """The async receiver of the asend rows."""


class _Emitter:
    changed = psygnal.Signal(int)


@dataclass(frozen=True)
class Case:
    """A row: which receivers are connected for which sender; sends come from ``Sender``.

    Attributes:
        label: The row label.
        connections: ``(receiver index, sender)`` pairs, in connection order.
    """

    label: str
    connections: tuple[tuple[int, type], ...]

    @property
    def matching(self) -> tuple[Callable[..., Any], ...]:
        """The receivers a send from ``Sender`` calls."""
        return tuple(RECEIVERS[i] for i, sender in self.connections if sender is Sender)

    @property
    def all_match(self) -> bool:
        """Whether every receiver is connected for ``Sender`` (psygnal has no senders)."""
        return all(sender is Sender for _, sender in self.connections)


CASES = (
    Case("0 receivers", ()),
    Case("1 receiver", ((0, Sender),)),
    Case("10 receivers", tuple((i, Sender) for i in range(10))),
    Case("100 receivers", tuple((i, Sender) for i in range(100))),
    Case(
        "1 of 11 matches sender",
        ((0, Sender), *((i, OTHER_SENDERS[i]) for i in range(1, 11))),
    ),
    Case("100 receivers, none match sender", tuple((i, OTHER_SENDERS[i]) for i in range(100))),
)


ROBUST = "robust"
ROBUST_CASES = CASES[1:4]


def _send_batches(case: Case) -> dict[str, Batch]:
    """The contenders of one row by column, checked to call the right number of receivers."""
    tidings_signal = tidings.Signal(name="bench")
    django_signal = django.dispatch.Signal()
    django_cached = django.dispatch.Signal(use_caching=True)
    blinker_signal = blinker.Signal()
    for index, sender in case.connections:
        tidings_signal.connect(RECEIVERS[index], sender=sender)
        django_signal.connect(RECEIVERS[index], sender=sender)
        django_cached.connect(RECEIVERS[index], sender=sender)
        blinker_signal.connect(RECEIVERS[index], sender=sender)
    sends: dict[str, Callable[..., Any]] = {
        TIDINGS_PURE: pure_method("send").__get__(tidings_signal),
        DJANGO: django_signal.send,
        DJANGO_CACHED: django_cached.send,
        BLINKER: blinker_signal.send,
    }
    if tidings.compiled:
        sends[TIDINGS] = tidings_signal.send
    expected = len(case.matching)
    for column, send in sends.items():
        calls = len(send(Sender, value=1))
        if calls != expected:
            raise RuntimeError(
                f"{column} called {calls} receivers in {case.label!r}, not {expected}"
            )
    batches = {
        column: statement_batch("send(Sender, value=1)", {"send": send, "Sender": Sender})
        for column, send in sends.items()
    }
    batches[FLOOR] = statement_batch(
        FLOOR_STATEMENT, {"receivers": case.matching, "s": tidings_signal, "Sender": Sender}
    )
    if case.all_match:
        emitter = _Emitter()
        instance = emitter.changed
        for index, _ in case.connections:
            instance.connect(VALUE_RECEIVERS[index])
        if len(instance) != expected:
            raise RuntimeError(f"psygnal holds {len(instance)} receivers, not {expected}")
        # The emitter rides along in the namespace: psygnal references its owner weakly.
        batches[PSYGNAL] = statement_batch("emit(1)", {"emit": instance.emit, "owner": emitter})
        batches[PSYGNAL_FAST] = statement_batch(
            "emit(1)", {"emit": instance.emit_fast, "owner": emitter}
        )
    return batches


def _asend_batches(loop: asyncio.AbstractEventLoop) -> dict[tuple[str, str], Batch]:
    """The asend contenders, keyed by ``(row, column)``, each checked once."""
    sync_row, async_row = "1 sync receiver", "1 async receiver"
    thread, inline, awaited = (tidings.Signal(name=f"bench {n}") for n in range(3))
    thread.connect(RECEIVERS[0], sender=Sender)
    inline.connect(RECEIVERS[0], sender=Sender, inline=True)
    awaited.connect(async_receiver, sender=Sender)
    django_sync, django_async = django.dispatch.Signal(), django.dispatch.Signal()
    django_sync.connect(RECEIVERS[0], sender=Sender)
    django_async.connect(async_receiver, sender=Sender)
    sends: dict[tuple[str, str], Callable[..., Any]] = {
        (sync_row, ASEND_THREAD): thread.asend,
        (sync_row, ASEND_INLINE): inline.asend,
        (sync_row, DJANGO_ASEND): django_sync.asend,
        (async_row, ASEND_THREAD): awaited.asend,
        (async_row, DJANGO_ASEND): django_async.asend,
    }
    for key, send in sends.items():
        calls = len(loop.run_until_complete(send(Sender, value=1)))
        if calls != 1:
            raise RuntimeError(f"{key} called {calls} receivers, not 1")
    batches = {
        key: async_statement_batch(
            "await send(Sender, value=1)", {"send": send, "Sender": Sender}, loop=loop
        )
        for key, send in sends.items()
    }
    floor = {"r": RECEIVERS[0], "ar": async_receiver, "s": thread, "Sender": Sender}
    batches[sync_row, FLOOR] = async_statement_batch(
        "r(signal=s, sender=Sender, value=1)", floor, loop=loop
    )
    batches[async_row, FLOOR] = async_statement_batch(
        "await ar(signal=s, sender=Sender, value=1)", floor, loop=loop
    )
    return batches


def _robust_batches(case: Case) -> dict[str, Batch]:
    """``send_robust`` compiled and pure for one row (no receiver fails), and its floor."""
    signal = tidings.Signal(name="bench robust")
    for index, sender in case.connections:
        signal.connect(RECEIVERS[index], sender=sender)
    sends: dict[str, Callable[..., Any]] = {
        TIDINGS_PURE: pure_method("send_robust").__get__(signal)
    }
    if tidings.compiled:
        sends[TIDINGS] = signal.send_robust
    for column, send in sends.items():
        if len(send(Sender, value=1)) != len(case.matching):
            raise RuntimeError(f"send_robust ({column}) missed receivers in {case.label!r}")
    batches = {
        column: statement_batch("send(Sender, value=1)", {"send": send, "Sender": Sender})
        for column, send in sends.items()
    }
    batches[FLOOR] = statement_batch(
        FLOOR_STATEMENT, {"receivers": case.matching, "s": signal, "Sender": Sender}
    )
    return batches


PER_SENDER = 10_000
DEATHS = 20
PER_SENDER_COLUMNS = (TIDINGS, DJANGO, DJANGO_CACHED)


class _Subscriber:
    """A per-object sender: each one has a receiver connected for itself."""

    __slots__ = ("__weakref__",)


def _per_sender_round(make: Callable[[], Any]) -> tuple[float, float]:
    """Connect a receiver per object, then kill objects one by one, each followed by a send.

    Both are the process's CPU time, not the wall time: on a shared machine the wall time of a
    run this long also counts the time spent waiting for a CPU, which says nothing about the
    dispatcher (a 10,000-connect run measured 0.05 s of wall time on a quiet machine and up to
    0.5 s while other processes kept both CPUs busy).

    Returns:
        (seconds to connect all of them, worst seconds of a send after a death).
    """
    signal = make()
    subscribers = [_Subscriber() for _ in range(PER_SENDER)]
    receiver = RECEIVERS[0]
    start = time.process_time()
    for subscriber in subscribers:
        signal.connect(receiver, sender=subscriber)
    connected = time.process_time() - start
    probe = _Subscriber()
    worst = 0.0
    for _ in range(DEATHS):
        subscribers.pop()  # one subscriber goes away; the send below is for someone else
        start = time.process_time()
        signal.send(probe, value=1)
        worst = max(worst, time.process_time() - start)
    if len(signal.send(subscribers[0], value=1)) != 1:
        raise RuntimeError(f"{make} lost a per-sender receiver")
    return connected, worst


def _per_sender(rounds: int) -> dict[str, dict[str, float]]:
    """Best of ``rounds`` per contender, in nanoseconds, keyed by row then column."""
    makers: dict[str, Callable[[], Any]] = {
        TIDINGS: lambda: tidings.Signal(name="bench"),
        DJANGO: django.dispatch.Signal,
        DJANGO_CACHED: lambda: django.dispatch.Signal(use_caching=True),
    }
    connect_row, death_row = (
        f"connect {PER_SENDER:,} per-sender receivers (total, CPU)",
        f"send after a sender died (worst of {DEATHS}, CPU)",
    )
    rows: dict[str, dict[str, float]] = {connect_row: {}, death_row: {}}
    for _ in range(rounds):
        for column, make in makers.items():
            gc.collect()
            connected, worst = _per_sender_round(make)
            for row, seconds in ((connect_row, connected), (death_row, worst)):
                best = rows[row].get(column)
                rows[row][column] = seconds * 1e9 if best is None else min(best, seconds * 1e9)
    return rows


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _report_targets(
    send_rows: Mapping[str, Mapping[str, Timing]],
    asend_rows: Mapping[str, Mapping[str, Timing]],
    per_sender: Mapping[str, Mapping[str, float]],
) -> None:
    print("\nTargets")
    slower = []
    for label, row in send_rows.items():
        for ours in (c for c in OURS if c in row):
            for column in (DJANGO, DJANGO_CACHED, BLINKER):
                if row[ours].best >= row[column].best:
                    slower.append(
                        f"{label}: {ours} {row[ours].best:,.0f} ns vs "
                        f"{column} {row[column].best:,.0f} ns"
                    )
    print(
        f"  [{_verdict(not slower)}] tidings send (each path) faster than django.dispatch "
        "(both modes) and blinker in every row"
    )
    for line in slower:
        print(f"         {line}")

    empty = send_rows[CASES[0].label]
    fastest = min(ANCHORS, key=lambda column: empty[column].best)
    theirs = empty[fastest].best
    for ours in (c for c in OURS if c in empty):
        mine = empty[ours].best
        print(
            f"  [{_verdict(mine <= theirs)}] 0 receivers: {ours} {mine:,.0f} ns, fastest "
            f"anchor {fastest} {theirs:,.0f} ns ({theirs / mine:.2f}x); "
            f"psygnal emit_fast, for reference: {empty[PSYGNAL_FAST].best:,.0f} ns"
        )

    if not tidings.compiled:
        print("  [----] compiled-path targets: tidings._speedups is not built here")
    else:
        for label, limit in COMPILED_TARGETS.items():
            row = send_rows[label]
            ratio = row[TIDINGS].best / row[FLOOR].best
            print(
                f"  [{_verdict(ratio <= limit)}] {label}: compiled send {ratio:.2f}x the floor "
                f"(target <= {limit:.2f}x)"
            )
        behind = [
            f"{label}: {row[TIDINGS].best:,.0f} ns vs psygnal {row[PSYGNAL].best:,.0f} ns"
            for label, row in send_rows.items()
            if PSYGNAL in row and row[TIDINGS].best >= row[PSYGNAL].best
        ]
        print(f"  [{_verdict(not behind)}] compiled send faster than psygnal emit at every n")
        for line in behind:
            print(f"         {line}")

    sync = asend_rows["1 sync receiver"]
    speedup = sync[DJANGO_ASEND].best / sync[ASEND_INLINE].best
    print(
        f"  [{_verdict(speedup >= INLINE_TARGET)}] asend to 1 inline sync receiver "
        f"{speedup:.1f}x faster than django asend to 1 sync receiver "
        f"(target {INLINE_TARGET:.0f}x; tidings {sync[ASEND_INLINE].best:,.0f} ns, "
        f"django {sync[DJANGO_ASEND].best:,.0f} ns)"
    )

    connect, death = (per_sender[row] for row in per_sender)
    ours = connect[TIDINGS] / 1e9
    print(
        f"  [{_verdict(ours < 0.1 and connect[TIDINGS] < connect[DJANGO])}] connect "
        f"{PER_SENDER:,} per-sender receivers in {ours:.3f} s (target < 0.1 s; django "
        f"{connect[DJANGO] / 1e9:.3f} s)"
    )
    worst = death[TIDINGS] / 1e6
    print(
        f"  [{_verdict(worst < 5)}] worst send after a sender died {worst:.2f} ms "
        f"(target < 5 ms; django {death[DJANGO] / 1e6:.2f} ms)"
    )


def run(quick: bool = False) -> None:
    """Measure and print the core tables and whether each target holds.

    Args:
        quick: A fast smoke run with fewer, shorter rounds (numbers are rougher).
    """
    settings = Settings.for_mode(quick=quick)
    print("core: send() and asend(), nanoseconds per send (ratio to the floor of the row)")
    print(environment(["tidings", "django", "blinker", "psygnal"]))
    print(
        f"best of {settings.rounds} interleaved rounds, each batch >= "
        f"{settings.min_time * 1000:.0f} ms{' (quick)' if quick else ''}\n"
    )

    batches: dict[tuple[str, ...], Batch] = {}
    for case in CASES:
        row = _send_batches(case)
        batches.update(((case.label, column), batch) for column, batch in row.items())
    for case in ROBUST_CASES:
        row = _robust_batches(case)
        batches.update(((ROBUST, case.label, column), batch) for column, batch in row.items())
    loop = asyncio.new_event_loop()
    try:
        batches.update(_asend_batches(loop))
        with CpuShare() as cpu:
            timings = measure(batches, settings=settings)
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    send_rows: dict[str, dict[str, Timing]] = {case.label: {} for case in CASES}
    robust_rows: dict[str, dict[str, Timing]] = {case.label: {} for case in ROBUST_CASES}
    asend_rows: dict[str, dict[str, Timing]] = {}
    for key, timing in timings.items():
        if key[0] == ROBUST:
            robust_rows[key[1]][key[2]] = timing
            continue
        label, column = key
        rows = send_rows if label in send_rows else asend_rows
        rows.setdefault(label, {})[column] = timing

    print_table("send()", SEND_COLUMNS, list(send_rows.items()), baseline=FLOOR)
    print()
    print_table(
        "send_robust(), none failing", ROBUST_COLUMNS, list(robust_rows.items()), baseline=FLOOR
    )
    print()
    print_table(
        "asend(), in a running loop", ASEND_COLUMNS, list(asend_rows.items()), baseline=FLOOR
    )
    print()
    per_sender = _per_sender(rounds=1 if quick else 3)
    print_table(
        "per-object senders, ns (ratio to django)",
        PER_SENDER_COLUMNS,
        list(per_sender.items()),
        baseline=DJANGO,
    )
    _report_targets(send_rows, asend_rows, per_sender)

    spreads = sorted((t.spread, key) for key, t in timings.items())
    worst, worst_key = spreads[-1]
    print(
        f"\nnoise: median round above best by {spreads[len(spreads) // 2][0]:.0%} "
        f"(typical), {worst:.0%} (worst: {' / '.join(worst_key)})"
    )
    print(cpu.describe())
