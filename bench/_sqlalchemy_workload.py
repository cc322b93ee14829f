"""The sqlalchemy section's workload, its worker process and the parent's handle on one.

One worker process per contender (see :mod:`bench.sqlalchemy_signals` for the contenders and
why each needs a process of its own). A worker reads one request per line on its stdin and
answers with one line:

* ``load <rows>``: ``session.scalars(select(Item)).all()`` with a fresh session, from a
  database holding ``rows`` rows (filled the first time it is asked for, untimed);
* ``insert <rows>``: build ``rows`` ``Item`` objects, ``add_all()`` them and ``commit()``,
  into a fresh database (creating the table is not timed);

  both answer ``<wall seconds> <CPU seconds>`` of the operation, taken with the collector off
  (collected before), as in :mod:`timeit`; the operation lies between two calls of the
  worker's *mark* (:data:`bench._callgrind.MARK` when its instructions are counted);
* ``received``: how many times the contender's receivers ran during operations;
* ``construct <repeat>``: the nanoseconds per object built of :func:`_construction_ns`.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, String, create_engine, event, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import StaticPool

__all__ = [
    "CONTENDERS",
    "INSTRUMENTED",
    "LISTENER",
    "OPERATIONS",
    "PLAIN",
    "PLAIN_AGAIN",
    "RECEIVER",
    "Worker",
    "worker",
]

PLAIN = "plain"
INSTRUMENTED = "instrumented"
PLAIN_AGAIN = "plain again"
RECEIVER = "1 receiver"
LISTENER = "listener floor"
CONTENDERS = (PLAIN, PLAIN_AGAIN, INSTRUMENTED, RECEIVER, LISTENER)
OPERATIONS = ("load", "insert")
# The processes that must never import tidings.
_WITHOUT_TIDINGS = (PLAIN, PLAIN_AGAIN, LISTENER)
ROOT = Path(__file__).resolve().parent.parent


def _define_item(base: Any) -> Any:
    """The benchmark's model, mapped under ``base`` (identical for every contender)."""

    class Item(base):  # type: ignore[misc]
        __tablename__ = "item"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50))
        email: Mapped[str] = mapped_column(String(100))
        value: Mapped[int]
        active: Mapped[bool]

    return Item


def _new_items(item: Any, rows: int) -> list[Any]:
    return [
        item(name=f"name {i}", email=f"user{i}@example.com", value=i, active=i % 2 == 0)
        for i in range(rows)
    ]


def _no_mark() -> None:
    pass


class _Workload:
    """One contender's models, databases and operations, inside its worker process."""

    def __init__(self, kind: str, mark: Callable[[], object] = _no_mark) -> None:
        class Base(DeclarativeBase):
            __app_label__ = "bench"

        self.received = 0
        self.mark = mark
        if kind not in _WITHOUT_TIDINGS:
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
        self.filled: dict[int, Engine] = {}

    def _receive(self, **kwargs: Any) -> None:
        self.received += 1

    def _listen(self) -> None:
        """SQLAlchemy's own per-row events calling the receiver as tidings would.

        With the keyword arguments tidings' signals pass (``post_init``: ``instance``;
        ``post_save``: ``instance``, ``created``, ``raw``, ``using``, ``update_fields``,
        ``changes``), so that the receiver's own work is the same as under tidings.
        """
        receive, item = self._receive, self.item

        def on_load(target: Any, context: Any) -> None:
            receive(signal=None, sender=item, instance=target)

        def on_init(target: Any, args: Any, kwargs: Any) -> None:
            receive(signal=None, sender=item, instance=target)

        def on_insert(mapper: Any, connection: Any, target: Any) -> None:
            receive(
                signal=None,
                sender=item,
                instance=target,
                created=True,
                raw=False,
                using="default",
                update_fields=None,
                changes={},
            )

        event.listen(item, "load", on_load)
        event.listen(item, "init", on_init)
        event.listen(item, "after_insert", on_insert)

    def _database(self, rows: int) -> Engine:
        """An in-memory database holding ``rows`` rows, filled once (the fill is not counted)."""
        if rows not in self.filled:
            received = self.received  # the fill's own signals are not the operations'
            # One connection shared by every session, so the in-memory database persists.
            engine = create_engine("sqlite://", poolclass=StaticPool)
            self.base.metadata.create_all(engine)
            with Session(engine) as session:
                session.add_all(_new_items(self.item, rows))
                session.commit()
            self.filled[rows] = engine
            self.received = received
        return self.filled[rows]

    @contextmanager
    def _region(self) -> Iterator[list[float]]:
        """Time the block between two marks: (wall, CPU) seconds, into the yielded list."""
        times: list[float] = []
        gc.collect()
        gc.disable()
        try:
            self.mark()
            wall, cpu = time.perf_counter(), time.process_time()
            yield times
            times += [time.perf_counter() - wall, time.process_time() - cpu]
            self.mark()
        finally:
            gc.enable()

    def load(self, rows: int) -> list[float]:
        """Seconds (wall, CPU) to load every row of a ``rows``-row database, fresh session."""
        engine, statement = self._database(rows), select(self.item)
        with self._region() as times, Session(engine) as session:
            loaded = session.scalars(statement).all()
        if len(loaded) != rows:
            raise AssertionError(f"loaded {len(loaded)} rows, expected {rows}")
        return times

    def insert(self, rows: int) -> list[float]:
        """Seconds (wall, CPU) to build, add and commit ``rows`` objects into a fresh database."""
        engine = create_engine("sqlite://", poolclass=StaticPool)
        self.base.metadata.create_all(engine)
        try:
            with self._region() as times, Session(engine) as session:
                session.add_all(_new_items(self.item, rows))
                session.commit()
            return times
        finally:
            engine.dispose()


def _construction_ns(instrumented: Any, rows: int, repeat: int) -> str:
    """Per object built: ``"<plain ns> <instrumented ns>"``, both measured in this process.

    A class mapped under a base that was never instrumented serves as the plain twin. Best of
    ``repeat`` alternated batches of ``rows`` objects, in CPU time, collector off.
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
                _new_items(cls, rows)
                best[name] = min(best[name], time.process_time() - cpu)
            finally:
                gc.enable()
    return f"{best['plain'] * 1e9 / rows!r} {best['instrumented'] * 1e9 / rows!r}"


def worker(kind: str, *, counted: bool = False) -> None:
    """The worker loop: answer each request line (see the module docstring) with one line.

    Answers ``ready`` once set up. With ``counted``, each operation lies between two calls of
    :data:`bench._callgrind.MARK`, for a parent counting its instructions.
    """
    from bench._callgrind import MARK

    workload = _Workload(kind, MARK if counted else _no_mark)
    if kind in _WITHOUT_TIDINGS and any(
        name.partition(".")[0] == "tidings" for name in sys.modules
    ):
        raise AssertionError("the plain worker imported tidings")
    print("ready", flush=True)
    for line in sys.stdin:
        request, _, argument = line.strip().partition(" ")
        if request == "received":
            print(workload.received, flush=True)
        elif request == "construct":
            rows = int(argument.split()[0])
            answer = _construction_ns(workload.item, rows, int(argument.split()[1]))
            print(answer, flush=True)
        elif request in OPERATIONS:
            operation = workload.load if request == "load" else workload.insert
            wall, cpu = operation(int(argument))
            print(f"{wall!r} {cpu!r}", flush=True)
        else:
            break


class Worker:
    """The parent's handle on one worker process.

    Args:
        kind: The contender (one of :data:`CONTENDERS`).
        prefix: Words put in front of the worker's command line (a valgrind invocation).
    """

    def __init__(self, kind: str, prefix: Sequence[str] = ()) -> None:
        counted = bool(prefix)
        code = (
            f"from bench._sqlalchemy_workload import worker; worker({kind!r}, counted={counted!r})"
        )
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-c", code],
            cwd=ROOT,
            # The same hash layout in every worker, so no process is luckier than another.
            env={**os.environ, "PYTHONHASHSEED": "20260"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, request: str) -> str:
        """Send one request line and return the answer line."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(request + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().strip()
        if not answer:
            raise RuntimeError(f"the benchmark worker exited while asked {request!r}")
        return answer

    def wait_ready(self) -> None:
        """Wait for the worker to be set up."""
        assert self.process.stdout is not None
        answer = self.process.stdout.readline().strip()
        if answer != "ready":
            raise RuntimeError(f"the benchmark worker failed to start (said {answer!r})")

    def check_received(self, expected: int) -> None:
        """Fail the section unless the contender's receivers ran ``expected`` times."""
        received = int(self.ask("received"))
        if received != expected:
            raise AssertionError(f"the receiver was called {received} times, expected {expected}")

    def close(self, timeout: float = 30) -> None:
        """Close the worker's stdin (its signal to exit) and wait for it to exit."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()
