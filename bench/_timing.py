"""Timing helpers shared by every benchmark module.

The machine a benchmark runs on is usually shared and noisy, so measurements are *interleaved*:
every contender is timed once per round, in a shuffled order, over several rounds, and each
contender keeps its best round (its median is kept too, to show how noisy the run was). A noise
burst then hurts one round of every contender instead of every round of one contender.

A contender is a :data:`Batch`: a callable that runs the operation ``number`` times and returns
the elapsed seconds, like :meth:`timeit.Timer.timeit`. Build one with :func:`statement_batch`
(a statement compiled into a timeit loop, so no wrapper call is timed), :func:`callable_batch`
or :func:`async_statement_batch` (a statement, possibly with ``await``, looped inside one
coroutine on a given event loop).

Typical use in a benchmark module::

    from bench._timing import Settings, measure, print_table, statement_batch

    def run(quick: bool = False) -> None:
        settings = Settings.for_mode(quick=quick)
        results = measure({"plain": statement_batch("f()", {"f": f})}, settings=settings)
        print_table("my case", ["plain"], [("f()", {"plain": results["plain"]})])
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import platform
import random
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = [
    "Batch",
    "CpuShare",
    "Settings",
    "Timing",
    "async_statement_batch",
    "calibrate",
    "callable_batch",
    "environment",
    "format_ns",
    "measure",
    "print_table",
    "statement_batch",
    "time_callable",
]

K = TypeVar("K", bound=Hashable)

Batch = Callable[[int], float]
"""Runs an operation ``number`` times and returns the elapsed time in seconds."""


@dataclass(frozen=True)
class Settings:
    """How long and how often to measure.

    Many short batches rather than a few long ones: on a shared machine a batch of a few
    milliseconds often runs without being preempted, one of 40 ms rarely does, and the best
    round is the figure kept.

    Attributes:
        rounds: Interleaved rounds; every contender is timed once per round.
        min_time: Seconds one timed batch of a contender should last at least; the loop count
            is calibrated once per contender to reach it.
        seed: Seed of the shuffle of contenders in each round, for reproducible orders.
        quick: Whether these are the settings of a fast smoke run.
    """

    rounds: int = 61
    min_time: float = 0.004
    seed: int = 20260
    quick: bool = False

    @classmethod
    def for_mode(cls, *, quick: bool) -> Settings:
        """The settings of a full run, or of a fast smoke run when ``quick`` is true."""
        if quick:
            return cls(rounds=11, min_time=0.002, quick=True)
        return cls()


@dataclass
class Timing:
    """The per-call times of one contender, one sample per round, in nanoseconds.

    Attributes:
        samples: Nanoseconds per call measured in each round.
        number: Calls per timed batch (the calibrated loop count).
    """

    samples: list[float] = field(default_factory=list)
    number: int = 0

    @property
    def best(self) -> float:
        """The fastest round: the figure least disturbed by other load on the machine."""
        return min(self.samples)

    @property
    def median(self) -> float:
        """The median round."""
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """How far the median lies above the best, as a fraction (a noise indicator)."""
        return self.median / self.best - 1.0


def statement_batch(stmt: str, namespace: Mapping[str, Any], *, setup: str = "pass") -> Batch:
    """A batch running ``stmt`` in a compiled timeit loop, with ``namespace`` as its globals.

    The statement is inlined in the loop, so calling ``f(x)`` times exactly that call and not
    a lambda around it. Garbage collection is off while timing, as in :mod:`timeit`.
    """
    return timeit.Timer(stmt, setup, globals=dict(namespace)).timeit


def callable_batch(func: Callable[[], object]) -> Batch:
    """A batch calling ``func()`` (the call itself, roughly 30 ns, is included in the figure)."""
    return timeit.Timer(func).timeit


def async_statement_batch(
    stmt: str, namespace: Mapping[str, Any], *, loop: asyncio.AbstractEventLoop
) -> Batch:
    """A batch running ``stmt`` (one line, which may ``await``) in a loop inside one coroutine.

    Each batch is one ``loop.run_until_complete()``; starting it costs a few microseconds,
    spread over the calibrated number of iterations.
    """
    source = (
        "async def _batch(_number):\n"
        "    _start = _clock()\n"
        "    for _ in _repeat(None, _number):\n"
        f"        {stmt}\n"
        "    return _clock() - _start\n"
    )
    scope: dict[str, Any] = {
        **namespace,
        "_clock": time.perf_counter,
        "_repeat": itertools.repeat,
    }
    exec(compile(source, f"<async batch: {stmt}>", "exec"), scope)
    coroutine_function = scope["_batch"]

    def batch(number: int) -> float:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return float(loop.run_until_complete(coroutine_function(number)))
        finally:
            if enabled:
                gc.enable()

    return batch


def calibrate(batch: Batch, *, min_time: float) -> int:
    """The smallest loop count in the 1-2-5 series whose batch lasts at least ``min_time``.

    This also warms the contender up (caches, lazily created executors) before it is timed.
    """
    for exponent in itertools.count():
        for factor in (1, 2, 5):
            number = int(factor * 10**exponent)
            if batch(number) >= min_time:
                return number
    raise AssertionError("unreachable")  # pragma: no cover


def measure(
    batches: Mapping[K, Batch], *, settings: Settings, verbose: bool = False
) -> dict[K, Timing]:
    """Time every batch, interleaved: each round times every contender once, shuffled.

    Args:
        batches: The contenders, by any hashable key (a label, a ``(row, column)`` pair).
        settings: Rounds and batch duration.
        verbose: Print a dot per round to stderr, so a long run shows progress.

    Returns:
        A :class:`Timing` per key, in nanoseconds per call.
    """
    timings = {
        key: Timing(number=calibrate(b, min_time=settings.min_time)) for key, b in batches.items()
    }
    order = list(batches)
    shuffle = random.Random(settings.seed).shuffle
    for _ in range(settings.rounds):
        shuffle(order)
        for key in order:
            timing = timings[key]
            timing.samples.append(batches[key](timing.number) * 1e9 / timing.number)
        if verbose:
            print(".", end="", file=sys.stderr, flush=True)
    if verbose:
        print(file=sys.stderr)
    return timings


class CpuShare:
    """A context manager measuring which share of the wall time this process spent on a CPU.

    A share well below 100% means other processes competed for the CPUs while measuring: the
    figures are then inflated and noisier, even if the best rounds absorb most of it.
    """

    def __enter__(self) -> CpuShare:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()
        self.share = 0.0
        return self

    def __exit__(self, *exc_info: object) -> None:
        wall = time.perf_counter() - self._wall
        self.share = (time.process_time() - self._cpu) / wall if wall > 0 else 0.0

    def describe(self) -> str:
        """A line saying how busy the machine was, e.g. for the end of a table."""
        verdict = "a quiet machine" if self.share >= 0.9 else "other load competed for the CPUs"
        return f"cpu: this process ran {self.share:.0%} of the wall time ({verdict})"


def time_callable(
    func: Callable[[], object], *, repeat: int = 5, min_time: float = 0.05, median: bool = False
) -> float:
    """Nanoseconds per call of ``func()``: autoranged, best (or median) of ``repeat`` batches."""
    batch = callable_batch(func)
    number = calibrate(batch, min_time=min_time)
    samples = [batch(number) * 1e9 / number for _ in range(repeat)]
    return statistics.median(samples) if median else min(samples)


def format_ns(ns: float) -> str:
    """Nanoseconds with thousands separators, e.g. ``1,234 ns``."""
    return f"{ns:,.0f} ns"


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[tuple[str, Mapping[str, Timing | float | None]]],
    *,
    baseline: str | None = None,
) -> None:
    """Print a table of nanoseconds per call, each cell with its ratio to ``baseline``.

    Args:
        title: Printed above the table.
        columns: Column names, in order; a row lacking a column shows ``-``.
        rows: ``(label, {column: timing or nanoseconds or None})`` pairs.
        baseline: A column whose value is the ratio's denominator in each row (e.g. the
            floor, a plain loop doing the unavoidable work). Without it no ratio is shown.
    """
    cells: list[list[str]] = []
    for _, values in rows:
        base = _ns(values.get(baseline)) if baseline is not None else None
        texts = []
        for column in columns:
            ns = _ns(values.get(column))
            if ns is None:
                texts.append("-")
            elif base and column != baseline:
                texts.append(f"{ns:,.0f} ({ns / base:.1f}x)")
            else:
                texts.append(f"{ns:,.0f}")
        cells.append(texts)
    label_width = max([len(label) for label, _ in rows] + [len(title)])
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]

    def line(label: str, texts: Sequence[str]) -> str:
        padded = (f"{text:>{width}}" for text, width in zip(texts, widths, strict=True))
        return f"{label:<{label_width}}  " + "  ".join(padded)

    print(line(title, columns))
    print("-" * (label_width + sum(w + 2 for w in widths)))
    for (label, _), texts in zip(rows, cells, strict=True):
        print(line(label, texts))


def _ns(value: Timing | float | None) -> float | None:
    if isinstance(value, Timing):
        return value.best
    return value


def environment(packages: Sequence[str] = ()) -> str:
    """One line naming the interpreter, the platform and the versions of ``packages``."""
    from importlib import metadata

    parts = [
        f"{platform.python_implementation()} {platform.python_version()}",
        f"{platform.system()} {platform.machine()}",
    ]
    for name in packages:
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)
