"""Benchmark: what ``tidings.sqlalchemy.instrument()`` costs SQLAlchemy when nobody listens.

Two operations, on identical models (five columns) over SQLite in memory, the fastest database
and so the one where any per-row overhead shows most:

* **load**: ``session.scalars(select(Item)).all()`` of 10,000 rows, with a fresh session;
* **insert**: build 10,000 ``Item`` objects, ``add_all()`` them and ``commit()``, into a fresh
  database each time (creating the table is not timed).

Contenders, each in its own worker process, started side by side and driven in interleaved
rounds (each round times every contender once, in a shuffled order; see ``bench/_timing.py``):

* ``plain``: SQLAlchemy alone; the process never imports tidings;
* ``plain again``: the same in a second process, the control: how far apart two identical
  processes measure is the resolution of the comparison;
* ``instrumented``: the models' base passed to ``instrument()``, no receiver connected;
* ``1 receiver``: as ``instrumented``, plus one trivial receiver connected to ``post_init``
  and ``post_save`` for ``Item`` (for information: from then on every row sends a signal);
* ``listener floor``: plain SQLAlchemy (no tidings) with its own event listeners on ``Item``,
  ``load`` and ``init`` + ``after_insert``, calling the same no-op receiver with the same
  keyword arguments: what a per-row callback costs SQLAlchemy at the least. Target (reported):
  tidings' added cost per row (``1 receiver`` minus ``plain``, the median of same-round
  differences) within 1.5x of the floor's.

Separate processes, because ``instrument()`` installs its flush and execute hooks on the
``Session`` class itself: a "plain" session in the same process would carry them too and hide
part of the cost. While one worker runs, the others wait for their turn, so they never compete
for a CPU. Every worker gets the same ``PYTHONHASHSEED``, so no process is luckier than another
with its hash layout. Garbage collection is off while timing (collected before), as in
:mod:`timeit`.

The figures are the CPU time of the worker process during the operation, not the wall time:
everything here runs in the process (SQLite in memory, no I/O), and on a shared machine the
wall time also counts the time spent waiting for a CPU, which has nothing to do with tidings.

Each cell of the table is a contender's best round, with its difference to ``plain``'s best.
The target (reported, never asserted): with no receivers, ``instrumented`` costs at most 5% more
than ``plain`` for both operations, judged on the median over rounds of the ratio of the two
times taken in the same round: on a busy machine the best rounds of two identical processes can
lie several percent apart (the ``control`` line shows how far), while same-round ratios cancel
the load that both saw.
"""

from __future__ import annotations

import gc
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import String, create_engine, event, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import StaticPool

from bench._timing import Timing, environment

__all__ = ["run", "worker"]

ROWS = 10_000
TARGET = 0.05
PLAIN = "plain"
INSTRUMENTED = "instrumented"
PLAIN_AGAIN = "plain again"
RECEIVER = "1 receiver"
LISTENER = "listener floor"
CONTENDERS = (PLAIN, PLAIN_AGAIN, INSTRUMENTED, RECEIVER, LISTENER)
# How far tidings' added cost per row (1 receiver vs plain) may exceed the floor's.
FLOOR_TARGET = 1.5
OPERATIONS = ("load", "insert")
ROOT = Path(__file__).resolve().parent.parent

# Seconds of timed rounds to aim for, and the bounds on the number of rounds.
FULL = (30.0, 5, 41)
QUICK = (4.0, 3, 7)


def _define_item(base: Any) -> Any:
    """The benchmark's model, mapped under ``base`` (identical for every contender)."""

    class Item(base):  # type: ignore[misc,valid-type]
        __tablename__ = "item"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50))
        email: Mapped[str] = mapped_column(String(100))
        value: Mapped[int]
        active: Mapped[bool]

    return Item


def _new_items(item: Any) -> list[Any]:
    return [
        item(name=f"name {i}", email=f"user{i}@example.com", value=i, active=i % 2 == 0)
        for i in range(ROWS)
    ]


class _Workload:
    """One contender's models, database and operations, inside its worker process."""

    def __init__(self, kind: str) -> None:
        class Base(DeclarativeBase):
            __app_label__ = "bench"

        self.received = 0
        if kind not in (PLAIN, PLAIN_AGAIN, LISTENER):
            # Only now: the plain worker must never import tidings.
            from tidings.sqlalchemy import instrument

            instrument(Base)
        self.base = Base
        self.item = _define_item(Base)
        if kind == RECEIVER:
            from tidings.models import post_init, post_save

            post_init.connect(self._receive, sender=self.item, weak=False)
            post_save.connect(self._receive, sender=self.item, weak=False)
        if kind == LISTENER:
            self._listen()
        # One connection shared by every session, so the in-memory database persists.
        self.engine = create_engine("sqlite://", poolclass=StaticPool)
        Base.metadata.create_all(self.engine)
        with Session(self.engine) as session:
            session.add_all(_new_items(self.item))
            session.commit()
        self.received = 0  # count from the first timed (or warm-up) operation on

    def _receive(self, **kwargs: Any) -> None:
        self.received += 1

    def _listen(self) -> None:
        """SQLAlchemy's own per-row events calling the receiver as tidings would."""
        receive, item = self._receive, self.item

        def on_load(target: Any, context: Any) -> None:
            receive(signal=None, sender=item, instance=target)

        def on_init(target: Any, args: Any, kwargs: Any) -> None:
            receive(signal=None, sender=item, instance=target)

        def on_insert(mapper: Any, connection: Any, target: Any) -> None:
            receive(signal=None, sender=item, instance=target, created=True)

        event.listen(item, "load", on_load)
        event.listen(item, "init", on_init)
        event.listen(item, "after_insert", on_insert)

    def load(self) -> tuple[float, float]:
        """Seconds (wall, CPU) to load every row with a fresh session."""
        statement = select(self.item)
        wall, cpu = time.perf_counter(), time.process_time()
        with Session(self.engine) as session:
            rows = session.scalars(statement).all()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if len(rows) != ROWS:
            raise AssertionError(f"loaded {len(rows)} rows, expected {ROWS}")
        return wall, cpu

    def insert(self) -> tuple[float, float]:
        """Seconds (wall, CPU) to build, add and commit new objects into a fresh database."""
        engine = create_engine("sqlite://", poolclass=StaticPool)
        self.base.metadata.create_all(engine)
        try:
            wall, cpu = time.perf_counter(), time.process_time()
            with Session(engine) as session:
                session.add_all(_new_items(self.item))
                session.commit()
            return time.perf_counter() - wall, time.process_time() - cpu
        finally:
            engine.dispose()

    def timed(self, operation: str) -> tuple[float, float]:
        """Run ``operation`` with the collector off; return its (wall, CPU) seconds."""
        gc.collect()
        gc.disable()
        try:
            return self.load() if operation == "load" else self.insert()
        finally:
            gc.enable()


def _construction_ns(instrumented: Any, repeat: int) -> str:
    """Per object built: ``"<plain ns> <instrumented ns>"``, both measured in this process.

    A class mapped under a base that was never instrumented serves as the plain twin. Best of
    ``repeat`` alternated batches of ``ROWS`` objects, in CPU time, collector off.
    """

    class PlainBase(DeclarativeBase):
        pass

    best = {"plain": float("inf"), "instrumented": float("inf")}
    classes = {"plain": _define_item(PlainBase), "instrumented": instrumented}
    for _ in range(repeat):
        for name, cls in classes.items():
            gc.collect()
            gc.disable()
            try:
                cpu = time.process_time()
                _new_items(cls)
                best[name] = min(best[name], time.process_time() - cpu)
            finally:
                gc.enable()
    return f"{best['plain'] * 1e9 / ROWS!r} {best['instrumented'] * 1e9 / ROWS!r}"


def worker(kind: str) -> None:
    """The worker loop: read an operation name per line, answer with its timing.

    Answers ``ready`` once set up; then, per request line (``load``, ``insert``, ``received``
    or ``construct <repeat>``), one line: ``<wall seconds> <CPU seconds>``, the receiver count,
    or the nanoseconds per object built of :func:`_construction_ns`.
    """
    workload = _Workload(kind)
    if kind in (PLAIN, PLAIN_AGAIN, LISTENER) and any(
        name.partition(".")[0] == "tidings" for name in sys.modules
    ):
        raise AssertionError("the plain worker imported tidings")
    print("ready", flush=True)
    for line in sys.stdin:
        request = line.strip()
        if request == "received":
            print(workload.received, flush=True)
        elif request.startswith("construct "):
            print(_construction_ns(workload.item, int(request.split()[1])), flush=True)
        elif request in OPERATIONS:
            wall, cpu = workload.timed(request)
            print(f"{wall!r} {cpu!r}", flush=True)
        else:
            break


class _Worker:
    """The parent's handle on one worker process."""

    def __init__(self, kind: str) -> None:
        code = f"from bench.sqlalchemy_signals import worker; worker({kind!r})"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": "20260"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, request: str) -> str:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(request + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().strip()
        if not answer:
            raise RuntimeError(f"the benchmark worker exited while asked {request!r}")
        return answer

    def wait_ready(self) -> None:
        assert self.process.stdout is not None
        answer = self.process.stdout.readline().strip()
        if answer != "ready":
            raise RuntimeError(f"the benchmark worker failed to start (said {answer!r})")

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


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


def run(quick: bool = False) -> None:
    """Measure and print the table and whether the 5% target holds.

    Args:
        quick: A fast smoke run with a few rounds (numbers are rougher).
    """
    budget, min_rounds, max_rounds = QUICK if quick else FULL
    print(
        f"sqlalchemy: load {ROWS:,} rows / insert {ROWS:,} rows, SQLite in memory, "
        "CPU ms per operation"
    )
    print(environment(["tidings", "sqlalchemy"]))
    workers = {kind: _Worker(kind) for kind in CONTENDERS}
    try:
        for handle in workers.values():
            handle.wait_ready()
        keys = [(op, kind) for op in OPERATIONS for kind in CONTENDERS]
        timings = {key: Timing(number=1) for key in keys}
        shares: list[float] = []
        for key in keys:  # warm-up, untimed: first runs fill caches and compile statements
            workers[key[1]].ask(key[0])
        _check_receivers(workers[RECEIVER])
        _check_receivers(workers[LISTENER])
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
                    wall, cpu = map(float, workers[kind].ask(op).split())
                    timings[op, kind].samples.append(cpu * 1e9)
                    shares.append(cpu / wall)
            rounds += 1
        construction = workers[INSTRUMENTED].ask(f"construct {5 if quick else 21}")
    finally:
        for handle in workers.values():
            handle.close()
    _print_results(timings, rounds, shares, construction)


def _check_receivers(handle: _Worker) -> None:
    """Fail the section if the receiver contender's receiver was not called for every row."""
    # The warm-up made one load (ROWS post_init) and one insert (ROWS post_init + post_save).
    received = int(handle.ask("received"))
    if received != 3 * ROWS:
        raise AssertionError(f"the receiver was called {received} times, expected {3 * ROWS}")


def _print_results(
    timings: dict[tuple[str, str], Timing], rounds: int, shares: list[float], construction: str
) -> None:
    print(f"best of {rounds} interleaved rounds, each contender in its own process\n")
    header = f"{'operation':<10}" + "".join(f"{kind:>20}" for kind in CONTENDERS)
    print(header)
    print("-" * len(header))
    verdicts = []
    for op in OPERATIONS:
        row = {kind: timings[op, kind] for kind in CONTENDERS}
        cells = []
        for kind in CONTENDERS:
            ms = row[kind].best / 1e6
            extra = "" if kind == PLAIN else f" ({_overhead(row, kind):+.1%})"
            cells.append(f"{ms:,.1f} ms{extra}")
        print(f"{op:<10}" + "".join(f"{cell:>20}" for cell in cells))
        verdicts.append((op, _overhead(row, INSTRUMENTED), _paired(row, INSTRUMENTED)))
    print()
    for op in OPERATIONS:
        row = {kind: timings[op, kind] for kind in CONTENDERS}
        print(
            f"control: {op}, plain again vs plain: {_paired(row, PLAIN_AGAIN):+.1%} median of "
            f"same-round ratios; {_overhead(row, PLAIN_AGAIN):+.1%} best vs best (ideally 0)"
        )
    for op, best, paired in verdicts:
        verdict = "PASS" if paired <= TARGET else "MISS"
        print(
            f"target: {op} with instrument() and no receivers <= +{TARGET:.0%} over plain: "
            f"{verdict} ({paired:+.1%} median of same-round ratios; {best:+.1%} best vs best)"
        )
    for op in OPERATIONS:
        row = {kind: timings[op, kind] for kind in CONTENDERS}
        # Same-round differences, as for the 5% target: the floor's added cost is a few percent
        # of an insert, less than how far the best rounds of two processes can lie apart.
        ours = _added(row, RECEIVER) / ROWS
        floor = _added(row, LISTENER) / ROWS
        ratio = ours / floor if floor > 0 else float("inf")
        verdict = "PASS" if ratio <= FLOOR_TARGET else "MISS"
        print(
            f"target: {op}, added cost per row with 1 receiver within {FLOOR_TARGET}x of the "
            f"listener floor's: {verdict} (tidings +{ours:,.0f} ns, floor +{floor:,.0f} ns, "
            f"{ratio:.2f}x; medians of same-round differences)"
        )
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
