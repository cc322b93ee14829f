"""Benchmark: what ``tidings.sqlalchemy.instrument()`` costs SQLAlchemy, per operation and per row.

Two operations, on identical models (five columns) over SQLite in memory, the fastest database
and so the one where any per-row overhead shows most (the workload is
``bench/_sqlalchemy_workload.py``):

* **load**: ``session.scalars(select(Item)).all()`` of 10,000 rows, with a fresh session;
* **insert**: build 10,000 ``Item`` objects, ``add_all()`` them and ``commit()``, into a fresh
  database each time (creating the table is not timed).

Contenders, each in its own worker process:

* ``plain``: SQLAlchemy alone; the process never imports tidings;
* ``plain again``: the same in a second process, the control: how far apart two identical
  processes measure is the resolution of the comparison;
* ``instrumented``: the models' base passed to ``instrument()``, no receiver connected;
* ``1 receiver``: as ``instrumented``, plus one trivial receiver connected to ``post_init``
  and ``post_save`` for ``Item`` (from then on every row sends a signal);
* ``listener floor``: plain SQLAlchemy (no tidings) with its own event listeners on ``Item``,
  ``load`` and ``init`` + ``after_insert``, calling the same no-op receiver with the same
  keyword arguments: what a per-row callback costs SQLAlchemy at the least.

Separate processes, because ``instrument()`` installs its flush and execute hooks on the
``Session`` class itself: a "plain" session in the same process would carry them too and hide
part of the cost. Every worker gets the same ``PYTHONHASHSEED``, so no process is luckier than
another with its hash layout.

Two measurements, each with its targets (reported, never asserted):

* **time**: the workers are driven in interleaved rounds (each round times every contender
  once, in a shuffled order; see ``bench/_timing.py``); while one runs, the others wait, so
  they never compete for a CPU. The figures are CPU time of the worker during the operation
  (everything runs in the process; the wall time would count the wait for a CPU on a shared
  machine). Each cell is a contender's best round, with its difference to ``plain``'s best.
  Target: with no receivers, ``instrumented`` costs at most 5% more than ``plain`` for both
  operations, judged on the median over rounds of same-round ratios (the best rounds of two
  identical processes can lie several percent apart; same-round ratios cancel the load both
  saw).
* **instructions** (where valgrind is installed): each worker runs once more under callgrind
  (see ``bench/_callgrind.py``) and counts the instructions of each operation on 500 and on
  1,000 rows (100 and 200 with ``--quick``; callgrind runs the code some fifty times slower).
  Per row is the difference of the two over the extra rows, so what an operation costs once
  (a flush, a commit) cancels out and is shown apart. Target: tidings' added instructions per
  row (``1 receiver`` minus ``plain``) within 1.5x of the floor's. This is the verdict because
  time cannot resolve it: the floor adds about a microsecond to a 30-microsecond insert row,
  less than two identical processes' times differ, while their instruction counts agree to
  a few parts in ten thousand (the control says how closely). The same ratio in time is
  printed beside it, with its control, for information (and as the verdict, marked as
  unresolved when the control is too wide, where valgrind is not installed).
"""

from __future__ import annotations

import math
import random
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench import _callgrind
from bench._sqlalchemy_workload import (
    CONTENDERS,
    INSTRUMENTED,
    LISTENER,
    OPERATIONS,
    PLAIN,
    PLAIN_AGAIN,
    RECEIVER,
    Worker,
)
from bench._timing import Timing, environment

__all__ = ["Counts", "count_instructions", "print_counts", "run"]

ROWS = 10_000
# Rows per counted operation (under callgrind), and twice as many: full and quick runs.
COUNTED_ROWS = 500
COUNTED_ROWS_QUICK = 100
TARGET = 0.05
# How far tidings' added cost per row (1 receiver vs plain) may exceed the floor's.
FLOOR_TARGET = 1.5
# The time verdict of a per-row target is unresolved when the resolution of the control (two
# identical processes, see _resolution) is at least this share of the floor's added cost.
RESOLUTION = 0.25

# Seconds of timed rounds to aim for, and the bounds on the number of rounds.
FULL = (30.0, 5, 41)
QUICK = (4.0, 3, 7)


def _expected_calls(requests: list[tuple[str, int]]) -> int:
    """Receiver calls the operations make: one per loaded row, two per inserted one."""
    return sum(rows if op == "load" else 2 * rows for op, rows in requests)


def run(quick: bool = False) -> None:
    """Measure and print both tables and whether the targets hold.

    Args:
        quick: A fast smoke run with a few rounds and fewer counted rows (numbers are rougher).
    """
    budget, min_rounds, max_rounds = QUICK if quick else FULL
    print(
        f"sqlalchemy: load {ROWS:,} rows / insert {ROWS:,} rows, SQLite in memory, "
        "CPU ms per operation"
    )
    print(environment(["tidings", "sqlalchemy"]))
    workers = {kind: Worker(kind) for kind in CONTENDERS}
    try:
        for handle in workers.values():
            handle.wait_ready()
        keys = [(op, kind) for op in OPERATIONS for kind in CONTENDERS]
        timings = {key: Timing(number=1) for key in keys}
        shares: list[float] = []
        for key in keys:  # warm-up, untimed: first runs fill caches and compile statements
            workers[key[1]].ask(f"{key[0]} {ROWS}")
        warm_up = [(op, ROWS) for op in OPERATIONS]
        workers[RECEIVER].check_received(_expected_calls(warm_up))
        workers[LISTENER].check_received(_expected_calls(warm_up))
        shuffle = random.Random(20260).shuffle
        operations, kinds = list(OPERATIONS), list(CONTENDERS)
        started = time.perf_counter()
        rounds = 0
        while rounds < max_rounds and (
            rounds < min_rounds or time.perf_counter() - started < budget
        ):
            shuffle(operations)
            for op in operations:
                # The contenders of one operation run back to back, so that the samples
                # compared within a round are taken under much the same load.
                shuffle(kinds)
                for kind in kinds:
                    wall, cpu = map(float, workers[kind].ask(f"{op} {ROWS}").split())
                    timings[op, kind].samples.append(cpu * 1e9)
                    shares.append(cpu / wall)
            rounds += 1
        construction = workers[INSTRUMENTED].ask(f"construct {ROWS} {5 if quick else 21}")
    finally:
        for handle in workers.values():
            handle.close()
    print(f"best of {rounds} interleaved rounds, each contender in its own process\n")
    _print_times(timings)
    rows = COUNTED_ROWS_QUICK if quick else COUNTED_ROWS
    unavailable, counts = _callgrind.find(), None
    if unavailable is None:
        try:
            counts = count_instructions(rows)
        except RuntimeError as error:  # e.g. callgrind_control may not attach to the worker
            unavailable = str(error)
    print()
    if counts is None:
        print(
            f"instructions: not counted ({unavailable}): install valgrind to resolve the "
            "per-row targets; the time verdicts below stand in for them"
        )
    else:
        print_counts(counts)
    print()
    _print_time_verdicts(timings, counted=counts is not None)
    _print_notes(timings, shares, construction)


def _overhead(timings: dict[str, Timing], contender: str) -> float:
    return timings[contender].best / timings[PLAIN].best - 1.0


def _paired(timings: dict[str, Timing], contender: str) -> float:
    """The median, over rounds, of the contender's time over plain's in the same round."""
    pairs = zip(timings[contender].samples, timings[PLAIN].samples, strict=True)
    return statistics.median(mine / plain for mine, plain in pairs) - 1.0


def _added(timings: dict[str, Timing], contender: str) -> float:
    """The median, over rounds, of the contender's time minus plain's in the same round."""
    pairs = zip(timings[contender].samples, timings[PLAIN].samples, strict=True)
    return statistics.median(mine - plain for mine, plain in pairs)


def _resolution(timings: dict[str, Timing]) -> float:
    """How closely a median of same-round differences measures, from the control's rounds.

    The control's median difference to ``plain`` (ideally 0), plus its standard error: about
    the interquartile range of the control's same-round differences over the square root of
    the number of rounds (a median's standard error is 1.25 standard deviations over that
    root, and an interquartile range is 1.35 of them).
    """
    pairs = zip(timings[PLAIN_AGAIN].samples, timings[PLAIN].samples, strict=True)
    differences = [again - plain for again, plain in pairs]
    if len(differences) < 2:
        return float("inf")
    first, _, third = statistics.quantiles(differences, n=4)
    spread = (third - first) / math.sqrt(len(differences))
    return abs(statistics.median(differences)) + spread


def _print_times(timings: dict[tuple[str, str], Timing]) -> None:
    header = f"{'operation':<10}" + "".join(f"{kind:>20}" for kind in CONTENDERS)
    print(header)
    print("-" * len(header))
    for op in OPERATIONS:
        row = {kind: timings[op, kind] for kind in CONTENDERS}
        cells = []
        for kind in CONTENDERS:
            ms = row[kind].best / 1e6
            extra = "" if kind == PLAIN else f" ({_overhead(row, kind):+.1%})"
            cells.append(f"{ms:,.1f} ms{extra}")
        print(f"{op:<10}" + "".join(f"{cell:>20}" for cell in cells))


def _print_time_verdicts(timings: dict[tuple[str, str], Timing], *, counted: bool) -> None:
    for op in OPERATIONS:
        row = {kind: timings[op, kind] for kind in CONTENDERS}
        print(
            f"control: {op}, plain again vs plain: {_paired(row, PLAIN_AGAIN):+.1%} median of "
            f"same-round ratios; {_overhead(row, PLAIN_AGAIN):+.1%} best vs best (ideally 0)"
        )
    for op in OPERATIONS:
        row = {kind: timings[op, kind] for kind in CONTENDERS}
        paired, best = _paired(row, INSTRUMENTED), _overhead(row, INSTRUMENTED)
        verdict = "PASS" if paired <= TARGET else "MISS"
        if counted:
            head = f"time, {op} with instrument() and no receivers: for information"
        else:
            head = (
                f"target: {op} with instrument() and no receivers <= +{TARGET:.0%} over plain: "
                f"{verdict}"
            )
        print(f"{head} ({paired:+.1%} median of same-round ratios; {best:+.1%} best vs best)")
    for op in OPERATIONS:
        row = {kind: timings[op, kind] for kind in CONTENDERS}
        # Same-round differences: the floor's added cost is a few percent of an insert, less
        # than how far the best rounds of two processes can lie apart.
        ours, floor = _added(row, RECEIVER) / ROWS, _added(row, LISTENER) / ROWS
        control = _resolution(row) / ROWS
        ratio = ours / floor if floor > 0 else float("inf")
        if ours <= 0 or floor <= 0 or control >= RESOLUTION * floor:
            verdict = "UNRESOLVED"
        else:
            verdict = "PASS" if ratio <= FLOOR_TARGET else "MISS"
        label = "for information (the verdict is the instructions')" if counted else verdict
        print(
            f"time, {op}: added cost per row with 1 receiver within {FLOOR_TARGET}x of the "
            f"listener floor's: {label} (tidings {ours:+,.0f} ns, floor {floor:+,.0f} ns, "
            f"{ratio:.2f}x, medians of same-round differences; resolution ±{control:,.0f} ns "
            "from the control)"
        )


def _print_notes(
    timings: dict[tuple[str, str], Timing], shares: list[float], construction: str
) -> None:
    plain_ns, instrumented_ns = map(float, construction.split())
    print(
        f"per object built, in one process: {plain_ns:,.0f} ns plain, {instrumented_ns:,.0f} ns "
        f"instrumented (+{instrumented_ns - plain_ns:,.0f} ns: the __init__ wrapper, the only "
        "per-row code of tidings when nobody listens)"
    )
    spreads = sorted(timing.spread for timing in timings.values())
    print(
        f"\nnoise: median round above best by {spreads[len(spreads) // 2]:.0%} (typical), "
        f"{spreads[-1]:.0%} (worst)"
    )
    share = statistics.median(shares)
    busy = "a quiet machine" if share >= 0.9 else "other load competed for the CPUs"
    print(f"cpu: the workers ran {share:.0%} of the timed wall time (median; {busy})")


@dataclass(frozen=True)
class Counts:
    """Instructions counted under callgrind, per contender and operation.

    Attributes:
        rows: The rows of the smaller operation; the larger one has twice as many.
        instructions: ``(operation, contender) -> (instructions on rows, on 2 * rows)``.
    """

    rows: int
    instructions: dict[tuple[str, str], tuple[int, int]]

    def per_row(self, op: str, kind: str) -> float:
        """Instructions per row: what ``rows`` more rows cost, over ``rows``."""
        small, large = self.instructions[op, kind]
        return (large - small) / self.rows

    def fixed(self, op: str, kind: str) -> float:
        """Instructions of the operation that do not grow with the rows (its cost at 0 rows)."""
        small, large = self.instructions[op, kind]
        return 2 * small - large

    def added(self, op: str, kind: str) -> float:
        """The contender's instructions per row beyond ``plain``'s."""
        return self.per_row(op, kind) - self.per_row(op, PLAIN)


def _count_one(kind: str, rows: int, directory: Path, name: str) -> dict[str, tuple[int, int]]:
    """Run one contender's worker under callgrind; its instructions per operation and size."""
    counter = _callgrind.Callgrind(directory, name)
    handle = Worker(kind, counter.prefix())
    counter.pid = handle.process.pid
    requests = [(op, size) for op in OPERATIONS for size in (rows, 2 * rows)]
    try:
        handle.wait_ready()
        for op, size in requests:  # warm-up, uninstrumented: as for the timed rounds
            handle.ask(f"{op} {size}")
        counter.instrument(True)
        for op, size in requests:
            handle.ask(f"{op} {size}")
        counter.instrument(False)
        if kind in (RECEIVER, LISTENER):
            handle.check_received(2 * _expected_calls(requests))
    finally:
        handle.close(timeout=600)
    regions = iter(counter.regions(len(requests)))
    return {op: (next(regions), next(regions)) for op in OPERATIONS}


def count_instructions(rows: int) -> Counts:
    """Count every contender's instructions per operation on ``rows`` and ``2 * rows`` rows.

    The workers run side by side: counts do not depend on what else the machine runs.
    """
    with (
        tempfile.TemporaryDirectory(prefix="bench-callgrind-") as directory,
        ThreadPoolExecutor(max_workers=len(CONTENDERS)) as pool,
    ):
        futures = {
            kind: pool.submit(_count_one, kind, rows, Path(directory), f"worker{index}")
            for index, kind in enumerate(CONTENDERS)
        }
        results = {kind: future.result() for kind, future in futures.items()}
    return Counts(
        rows,
        {(op, kind): results[kind][op] for op in OPERATIONS for kind in CONTENDERS},
    )


def print_counts(counts: Counts) -> None:
    """Print the instruction table and the per-row verdicts taken from it."""
    rows = counts.rows
    print(
        f"instructions per row (callgrind): an operation on {2 * rows:,} rows minus the same on "
        f"{rows:,}, over {rows:,} rows; in brackets, beyond plain"
    )
    header = f"{'operation':<10}" + "".join(f"{kind:>20}" for kind in CONTENDERS)
    print(header)
    print("-" * len(header))
    for op in OPERATIONS:
        cells = []
        for kind in CONTENDERS:
            extra = "" if kind == PLAIN else f" ({counts.added(op, kind):+,.0f})"
            cells.append(f"{counts.per_row(op, kind):,.0f}{extra}")
        print(f"{op:<10}" + "".join(f"{cell:>20}" for cell in cells))
    for op in OPERATIONS:
        fixed = ", ".join(
            f"{kind} {counts.fixed(op, kind) - counts.fixed(op, PLAIN):+,.0f}"
            for kind in CONTENDERS
            if kind != PLAIN
        )
        print(f"once per {op}, beyond plain: {fixed} instructions")
    for op in OPERATIONS:
        control = counts.added(op, PLAIN_AGAIN)
        print(
            f"control: {op}, plain again vs plain: {control:+,.0f} instructions per row "
            f"({control / counts.per_row(op, PLAIN):+.2%}; ideally 0)"
        )
    for op in OPERATIONS:
        # All that instrument() adds to the larger operation: per row and once per operation.
        plain, instrumented = (
            counts.instructions[op, PLAIN][1],
            counts.instructions[op, INSTRUMENTED][1],
        )
        overhead = instrumented / plain - 1.0
        verdict = "PASS" if overhead <= TARGET else "MISS"
        print(
            f"target: {op} with instrument() and no receivers <= +{TARGET:.0%} over plain: "
            f"{verdict} ({overhead:+.2%} instructions on {2 * rows:,} rows)"
        )
    for op in OPERATIONS:
        ours, floor = counts.added(op, RECEIVER), counts.added(op, LISTENER)
        ratio = ours / floor if floor > 0 else float("inf")
        verdict = "PASS" if ratio <= FLOOR_TARGET else "MISS"
        print(
            f"target: {op}, added cost per row with 1 receiver within {FLOOR_TARGET}x of the "
            f"listener floor's: {verdict} (tidings {ours:+,.0f}, floor {floor:+,.0f} "
            f"instructions per row, {ratio:.2f}x)"
        )
