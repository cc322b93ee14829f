"""Benchmark: an event from a committed transaction to a receiver in another process.

Every contender does the same business work per event: one PostgreSQL transaction that inserts
a row and commits; then the event reaches a trivial receiver in a separate worker process,
which notes the time since the commit.

* **floor**: commit, then a plain redis-py ``XADD``; the consumer process does
  ``XREADGROUP``, calls the receiver and ``XACK`` (lossy: a crash between the commit and the
  ``XADD`` loses the event).
* **celery** (``bench.remote_celery``, where Celery is installed: the ``bench`` dependency
  group): commit, then ``task.delay()`` on the same Redis; a Celery worker process.
* **tidings queue**: the send stores an outbox row in the transaction; a relay process
  (``tidings worker --no-consume``) publishes it to Redis; a worker process
  (``tidings worker --no-relay``) runs the ``delivery="queue"`` receiver.

Measured for each: events per second for a burst from one producer (the time from the first
commit to the last receiver call), commit-to-receiver latency (p50 / p99 / max) at a steady
250 events per second, and a crash run (``bench.remote_crash``): producers SIGKILLed at random
moments, counting the committed rows whose event never ran (lost) or ran twice.
Targets: tidings' throughput at least Celery's and half the floor's, p99 under 10 ms at
250/s, nothing lost.

Skipped (and says so) where PostgreSQL (``TIDINGS_POSTGRES_URL``) or Redis
(``TIDINGS_REDIS_URL``) is unreachable.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import Column, Engine, Float, Integer, MetaData, Table, insert

from bench.outbox import postgres

if TYPE_CHECKING:
    from bench.remote_crash import Crashes

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("TIDINGS_REDIS_URL", "redis://127.0.0.1:6379/0")
APP = "bench.remote_app:outbox"
RATE = 250.0


def redis_client() -> Any:
    """A redis-py client on ``TIDINGS_REDIS_URL``, or None if unreachable."""
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        client.ping()
    except Exception as exc:
        print(f"  Redis unreachable ({type(exc).__name__}): section skipped")
        return None
    return client


def read_latencies(path: Path) -> list[float]:
    """The latencies (seconds) the receiver noted so far, one per call."""
    if not path.exists():
        return []
    return [float(line.split()[1]) for line in path.read_text().splitlines() if line]


def wait_calls(path: Path, count: int, timeout: float) -> float:
    """Wait until ``count`` calls were noted; return when the last one was (``time.time()``)."""
    deadline = time.monotonic() + timeout
    while len(read_latencies(path)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(read_latencies(path))} of {count} calls arrived")
        time.sleep(0.02)
    return path.stat().st_mtime


def note(path: str, n: int, sent: float) -> None:
    """The trivial receiver's work: append ``n latency`` to the file, in one write."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{n} {time.time() - sent:.6f}\n".encode())
    finally:
        os.close(fd)


# -- the floor's consumer (runs as `python -m bench.remote floor-consumer ...`) -------------


def floor_consumer(url: str, stream: str, out: str) -> None:
    """XREADGROUP, call the receiver, XACK; until SIGTERM."""
    import redis

    client = redis.Redis.from_url(url)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    with contextlib.suppress(redis.ResponseError):
        client.xgroup_create(stream, "floor", id="0", mkstream=True)
    print("consuming", flush=True)
    while not stopping:
        reply = client.xreadgroup("floor", "c", {stream: ">"}, count=50, block=200)
        for _, entries in reply or []:
            for entry_id, fields in entries:
                note(out, int(fields[b"n"]), float(fields[b"sent"]))
                client.xack(stream, "floor", entry_id)


# -- contenders -------------------------------------------------------------------------


class Contender(NamedTuple):
    """One contender, set up: its consumer processes run until the context that made it ends."""

    #: Commit one business row numbered ``n``, then get the event on its way.
    produce: Callable[[int], None]
    #: The file the receiver notes its calls in.
    out: Path
    #: The business table ``produce`` inserts into.
    table: Table
    #: The environment a producer process needs to do what ``produce`` does (bench.remote_crash).
    env: dict[str, str]


def business_table(engine: Engine, name: str | None = None) -> Table:
    """The business table every contender inserts into: a new one (created), or ``name``'s."""
    metadata = MetaData()
    table = Table(
        name or f"bench_events_{uuid.uuid4().hex[:6]}",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("n", Integer),
        Column("at", Float),
    )
    if name is None:
        metadata.create_all(engine)
    return table


def producer_env(kind: str, engine: Engine, table: Table, **names: str) -> dict[str, str]:
    """The environment of a process producing like ``kind`` into ``table`` (and ``names``)."""
    return dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        BENCH_KIND=kind,
        BENCH_DB_URL=engine.url.render_as_string(hide_password=False),
        BENCH_TABLE=table.name,
        BENCH_REDIS_URL=REDIS_URL,
        **names,
    )


def floor_sender(engine: Engine, table: Table, client: Any, stream: str) -> Callable[[int], None]:
    """The floor's producer: commit the row, then XADD."""

    def produce(n: int) -> None:
        with engine.begin() as conn:
            conn.execute(insert(table).values(n=n, at=0.0))
            sent = time.time()
        client.xadd(stream, {"n": n, "sent": sent})

    return produce


def tidings_sender(engine: Engine, table: Table) -> Callable[[int], None]:
    """tidings' producer: the row and the send in one transaction (an outbox is installed)."""
    from bench import remote_app
    from tidings.outbox import writing_on

    def produce(n: int) -> None:
        with engine.begin() as conn, writing_on(conn):
            conn.execute(insert(table).values(n=n, at=0.0))
            remote_app.happened.send(None, n=n, sent=time.time())

    return produce


def start(
    args: list[str], env: dict[str, str], log: Path, ready: str | None
) -> subprocess.Popen[str]:
    """Start a helper process (output to ``log``); wait until ``ready`` shows in it."""
    with open(log, "w") as out:
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True
        )
    deadline = time.monotonic() + 60
    while ready is not None and ready not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{args} did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    return process


def stop(processes: list[subprocess.Popen[str]]) -> None:
    """SIGTERM the helpers and wait for them."""
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.contextmanager
def floor(engine: Engine, folder: Path, client: Any) -> Iterator[Contender]:
    """The floor: commit, then XADD; a consumer process."""
    table = business_table(engine)
    stream = f"tidings-bench-{uuid.uuid4().hex[:8]}"
    out = folder / "floor.txt"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    consumer = start(
        [sys.executable, "-m", "bench.remote", "floor-consumer", REDIS_URL, stream, str(out)],
        env,
        folder / "floor-consumer.log",
        "consuming",
    )

    produce = floor_sender(engine, table, client, stream)
    try:
        yield Contender(
            produce, out, table, producer_env("floor", engine, table, BENCH_STREAM=stream)
        )
    finally:
        stop([consumer])
        client.delete(stream)


@contextlib.contextmanager
def tidings_queue(engine: Engine, folder: Path, client: Any) -> Iterator[Contender]:
    """tidings: the outbox row in the transaction, a relay process, a worker process."""
    from bench import remote_app
    from tidings.transport.redis import RedisTransport

    table = business_table(engine)
    prefix = f"tidings-bench-{uuid.uuid4().hex[:8]}"
    out = folder / "tidings.txt"
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        BENCH_DB_URL=engine.url.render_as_string(hide_password=False),
        BENCH_REDIS_URL=REDIS_URL,
        BENCH_PREFIX=prefix,
        BENCH_OUT=str(out),
    )
    os.environ.update(
        {k: env[k] for k in ("BENCH_DB_URL", "BENCH_REDIS_URL", "BENCH_PREFIX", "BENCH_OUT")}
    )
    box = remote_app.outbox()
    box.create_all()
    worker = [sys.executable, "-m", "tidings", "worker", APP]
    processes = [
        start([*worker, "--no-relay", "--prefetch", "50"], env, folder / "worker.log", "consuming"),
        start([*worker, "--no-consume", "-q"], env, folder / "relay.log", None),
    ]
    box.install()
    produce = tidings_sender(engine, table)
    try:
        names = {k: env[k] for k in ("BENCH_PREFIX", "BENCH_OUT")}
        yield Contender(produce, out, table, producer_env("tidings", engine, table, **names))
    finally:
        box.uninstall()
        stop(processes)
        transport = RedisTransport(REDIS_URL, prefix=prefix)
        transport.delete_all()
        transport.close()
        box.engine.dispose()


def throughput(produce: Callable[[int], None], out: Path, events: int) -> float:
    """Events per second from the first commit to the last receiver call."""
    started = time.time()
    for n in range(events):
        produce(n)
    last = wait_calls(out, events, timeout=120 + events / 50)
    return events / (last - started)


def latency(
    produce: Callable[[int], None], out: Path, seconds: float, first: int
) -> tuple[float, float, float, float]:
    """The rate achieved, then p50, p99 and max commit-to-call latency (ms), at ``RATE``/s."""
    count = int(seconds * RATE)
    begin = time.monotonic()
    for i in range(count):
        wait = begin + i / RATE - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        produce(first + i)
    achieved = count / (time.monotonic() - begin)
    wait_calls(out, first + count, timeout=60)
    values = sorted(read_latencies(out)[first:])
    cut = statistics.quantiles(values, n=100)
    return achieved, cut[49] * 1e3, cut[98] * 1e3, values[-1] * 1e3


def contenders() -> list[
    tuple[str, Callable[[Engine, Path, Any], contextlib.AbstractContextManager[Contender]]]
]:
    """The contenders, in the order they run; Celery's only where it is installed."""
    found = [("floor: commit, XADD", floor)]
    if importlib.util.find_spec("celery") is None:
        print(
            "  Celery is not installed: its row is skipped "
            '(it is in the "bench" dependency group, which `make bench` installs)'
        )
    else:
        from bench.remote_celery import celery_delay

        found.append(("celery: commit, delay()", celery_delay))
    found.append(("tidings queue", tidings_queue))
    return found


def measure(
    contender: Contender, engine: Engine, events: int, seconds: float, kills: int
) -> tuple[float, float, float, float, float, Crashes]:
    """Throughput, the latency at ``RATE``/s, then the crash run, of one contender."""
    from bench.remote_crash import crash_run

    for n in range(50):  # warm up connections and caches
        contender.produce(-1 - n)
    wait_calls(contender.out, 50, timeout=60)
    contender.out.unlink()
    rate = throughput(contender.produce, contender.out, events)
    steady, p50, p99, worst = latency(contender.produce, contender.out, seconds, events)
    return rate, steady, p50, p99, worst, crash_run(contender, engine, kills, seed=kills)


def run(quick: bool = False) -> None:
    """Print the table: throughput, latency and the crash run's counts, side by side."""
    events = 2_000 if quick else 20_000
    seconds = 3.0 if quick else 10.0
    kills = 10 if quick else 50
    client = redis_client()
    if client is None:
        return
    rows = []
    with postgres() as engine, tempfile.TemporaryDirectory() as folder:
        if engine is None:
            return
        for name, make in contenders():
            with make(engine, Path(folder), client) as contender:
                rows.append((name, *measure(contender, engine, events, seconds, kills)))
            print(f"  {name}: done", flush=True)
    client.close()
    print_table(rows, events, seconds, kills)


def print_table(
    rows: list[tuple[str, float, float, float, float, float, Crashes]],
    events: int,
    seconds: float,
    kills: int,
) -> None:
    """The benchmark's table, what its columns mean, and the crash runs' details."""
    floor_rate = rows[0][1]
    header = ("events/s", "x floor", "steady/s", "p50 ms", "p99 ms", "max ms", "lost", "dup")
    print(f"\n  {'contender':<24}" + "".join(f"{cell:>9}" for cell in header))
    for name, rate, steady, p50, p99, worst, crashes in rows:
        cells = (f"{rate:,.0f}", f"{rate / floor_rate:.2f}", f"{steady:.0f}")
        cells += (f"{p50:.2f}", f"{p99:.2f}", f"{worst:.1f}", *crashes.cells())
        print(f"  {name:<24}" + "".join(f"{cell:>9}" for cell in cells))
    print(
        f"  events/s: {events:,} events from one producer, first commit to last call; "
        f"latency: commit to call at {RATE:.0f}/s asked for {seconds:.0f} s (steady/s: achieved);"
        f"\n  lost/dup: committed rows that never ran / ran again, {kills} producers SIGKILLed "
        "at random moments (bench.remote_crash)"
    )
    for name, *_, crashes in rows:
        print(
            f"  crash run, {name}: {crashes.committed:,} committed, {crashes.lost} lost "
            f"(in {crashes.losing_kills} of {crashes.kills} kills), "
            f"{crashes.duplicated} duplicated"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["floor-consumer"]:
        floor_consumer(*sys.argv[2:5])
    else:
        run(quick="--quick" in sys.argv)
