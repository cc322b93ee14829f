"""The remote benchmark's crash run: producers SIGKILLed at random moments; what never ran.

For one contender (its consumer processes running), a producer host process
(``python -m bench.remote_crash``) imports what the contender's producer needs, then, on each
``go BASE`` line on its standard input, forks a producer: it connects, commits business rows
numbered ``BASE``, ``BASE + 1``, ... and gets each event on its way exactly as the contender's
``produce`` does (the same function), until the benchmark SIGKILLs it at a random moment. A
forked producer starts in milliseconds, like a web worker forked from a preloaded server, so a
run of many kills stays short.

After the last kill the consumers drain; then the numbers committed in the business table are
compared with the numbers the receiver noted: **lost** = committed but never run,
**duplicated** = runs beyond the first of a number.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy import Engine, create_engine, select

from bench.remote import ROOT, Contender, business_table

#: The first row number of the crash run (the other measurements number theirs below it).
BASE = 10_000_000
#: Row numbers one producer may use (far more than it commits before its kill).
SPAN = 100_000
#: Seconds each producer runs, at random in this range, after its first event.
LIFE = (0.02, 0.4)
#: Seconds without a new call after which a drain that did not cover every row ends.
QUIET = 3.0


@dataclass(frozen=True)
class Crashes:
    """What a crash run found."""

    kills: int
    committed: int
    lost: int
    duplicated: int
    #: Kills after which at least one of that producer's committed rows never ran.
    losing_kills: int

    def cells(self) -> tuple[str, str]:
        """``lost`` and ``duplicated``, as the table shows them."""
        return f"{self.lost}", f"{self.duplicated}"


def crash_run(contender: Contender, engine: Engine, kills: int, seed: int) -> Crashes:
    """SIGKILL ``kills`` producers of ``contender`` at random moments, drain, count."""
    rng = random.Random(seed)
    log = contender.out.with_suffix(".crash.log")
    with open(log, "w") as errors:
        host = subprocess.Popen(
            [sys.executable, "-m", "bench.remote_crash"],
            cwd=ROOT,
            env=contender.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    assert host.stdin is not None
    assert host.stdout is not None
    try:
        for kill in range(kills):
            host.stdin.write(f"go {BASE + kill * SPAN}\n")
            host.stdin.flush()
            pid = read_pid(host.stdout, log)
            time.sleep(rng.uniform(*LIFE))
            os.kill(pid, signal.SIGKILL)
            status = host.stdout.readline().split()
            if status != ["dead", str(-signal.SIGKILL)]:
                raise RuntimeError(f"producer {pid} ended with {status}: {log.read_text()[-2000:]}")
    finally:
        host.stdin.close()
        host.wait(30)
    with engine.connect() as conn:
        table = contender.table
        committed = set(conn.scalars(select(table.c.n).where(table.c.n >= BASE)))
    ran = drain(contender.out, committed)
    times = collections.Counter(ran)
    lost = committed - set(times)
    return Crashes(
        kills=kills,
        committed=len(committed),
        lost=len(lost),
        duplicated=sum(count - 1 for count in times.values()),
        losing_kills=len({(n - BASE) // SPAN for n in lost}),
    )


def read_pid(stdout: IO[str], log: Path) -> int:
    """The forked producer's pid, once it said it committed and sent its first event."""
    lines = [stdout.readline().split(), stdout.readline().split()]
    pids = [int(words[1]) for words in lines if len(words) == 2 and words[0] == "pid"]
    if len(pids) != 1 or ["ready"] not in lines:
        raise RuntimeError(f"the producer did not start: {lines} {log.read_text()[-2000:]}")
    return pids[0]


def drain(out: Path, committed: set[int]) -> list[int]:
    """The numbers the receiver ran (from ``BASE`` on), once all committed ones ran or the
    calls stopped for ``QUIET`` seconds (what is lost never comes)."""
    last, seen, changed = -1, [], time.monotonic()
    deadline = changed + 120
    while time.monotonic() < deadline:
        seen = [n for n in numbers(out) if n >= BASE]
        if committed <= set(seen):
            break
        if len(seen) != last:
            last, changed = len(seen), time.monotonic()
        elif time.monotonic() - changed > QUIET:
            break
        time.sleep(0.1)
    return seen


def numbers(out: Path) -> list[int]:
    """The numbers of the calls the receiver noted, in order."""
    if not out.exists():
        return []
    return [int(line.split()[0]) for line in out.read_text().splitlines() if line]


# -- the producer host (runs as `python -m bench.remote_crash`, the contender's env) ---------


def sender() -> Callable[[int], None]:
    """The contender's own ``produce``, on new connections (``BENCH_KIND`` names it)."""
    from bench import remote

    engine = create_engine(os.environ["BENCH_DB_URL"])
    table = business_table(engine, os.environ["BENCH_TABLE"])
    kind = os.environ["BENCH_KIND"]
    if kind == "floor":
        import redis

        client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
        return remote.floor_sender(engine, table, client, os.environ["BENCH_STREAM"])
    if kind == "celery":
        from bench import remote_celery

        app = remote_celery.make_app(os.environ["BENCH_REDIS_URL"], os.environ["BENCH_PREFIX"])
        return remote_celery.celery_sender(engine, table, app)
    if kind == "tidings":
        from bench import remote_app

        remote_app.outbox().install()
        return remote.tidings_sender(engine, table)
    raise ValueError(f"BENCH_KIND={kind!r}: expected floor, celery or tidings")


def produce_forever(base: int) -> None:
    """The forked producer: say ``ready`` after the first event, then go on until killed."""
    produce = sender()
    produce(base)
    print("ready", flush=True)
    for n in range(base + 1, base + SPAN):
        produce(n)
    raise RuntimeError(f"the producer used all {SPAN} numbers from {base} without being killed")


def host() -> None:
    """Fork a producer per ``go BASE`` line; report its pid and, once reaped, its status."""
    # What every producer imports, imported once before the forks.
    import psycopg  # noqa: F401
    import redis  # noqa: F401

    import bench.remote_app

    if os.environ["BENCH_KIND"] == "celery":
        import bench.remote_celery  # noqa: F401
    for line in sys.stdin:
        base = int(line.split()[1])
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            try:
                produce_forever(base)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(1)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"dead {-os.WTERMSIG(status) if os.WIFSIGNALED(status) else status}", flush=True)


if __name__ == "__main__":
    host()
