"""Benchmark: an event from a committed transaction to a receiver in another process.

Every contender does the same business work per event: one PostgreSQL transaction that inserts
a row and commits; then the event reaches a trivial receiver in a separate worker process,
which notes the time since the commit.

* **floor**: commit, then a plain redis-py ``XADD``; the consumer process does
  ``XREADGROUP``, calls the receiver and ``XACK`` (lossy: a crash between the commit and the
  ``XADD`` loses the event).
* **tidings queue**: the send stores an outbox row in the transaction; a relay process
  (``tidings worker --no-consume``) publishes it to Redis; a worker process
  (``tidings worker --no-relay``) runs the ``delivery="queue"`` receiver.

Measured for each: events per second for a burst from one producer (the time from the first
commit to the last receiver call), and commit-to-receiver latency (p50 / p99 / max) at a steady
250 events per second. Celery is not measured here (not a dependency of the project).
Targets (issue): tidings' throughput at least half the floor's, p99 under 10 ms at 250/s.

Skipped (and says so) where PostgreSQL (``TIDINGS_POSTGRES_URL``) or Redis
(``TIDINGS_REDIS_URL``) is unreachable.
"""

from __future__ import annotations

import contextlib
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
from typing import Any

from sqlalchemy import Column, Engine, Float, Integer, MetaData, Table, insert

from bench.outbox import postgres

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


def business_table(engine: Engine) -> Table:
    """The business table every contender inserts into (created)."""
    metadata = MetaData()
    table = Table(
        f"bench_events_{uuid.uuid4().hex[:6]}",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("n", Integer),
        Column("at", Float),
    )
    metadata.create_all(engine)
    return table


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
def floor(
    engine: Engine, folder: Path, client: Any
) -> Iterator[tuple[Callable[[int], None], Path]]:
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

    def produce(n: int) -> None:
        with engine.begin() as conn:
            conn.execute(insert(table).values(n=n, at=0.0))
            sent = time.time()
        client.xadd(stream, {"n": n, "sent": sent})

    try:
        yield produce, out
    finally:
        stop([consumer])
        client.delete(stream)


@contextlib.contextmanager
def tidings_queue(
    engine: Engine, folder: Path, client: Any
) -> Iterator[tuple[Callable[[int], None], Path]]:
    """tidings: the outbox row in the transaction, a relay process, a worker process."""
    from bench import remote_app
    from tidings.outbox import writing_on
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
        start([*worker, "--no-consume", "--poll", "0.002", "-q"], env, folder / "relay.log", None),
    ]
    box.install()

    def produce(n: int) -> None:
        with engine.begin() as conn, writing_on(conn):
            conn.execute(insert(table).values(n=n, at=0.0))
            remote_app.happened.send(None, n=n, sent=time.time())

    try:
        yield produce, out
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


def run(quick: bool = False) -> None:
    """Print the table: throughput and latency, floor and tidings side by side."""
    events = 2_000 if quick else 20_000
    seconds = 3.0 if quick else 10.0
    client = redis_client()
    if client is None:
        return
    rows = []
    contenders = (("floor: commit, XADD", floor), ("tidings queue", tidings_queue))
    with postgres() as engine, tempfile.TemporaryDirectory() as folder:
        if engine is None:
            return
        for name, contender in contenders:
            with contender(engine, Path(folder), client) as (produce, out):
                for n in range(50):  # warm up connections and caches
                    produce(-1 - n)
                wait_calls(out, 50, timeout=60)
                out.unlink()
                rate = throughput(produce, out, events)
                steady, p50, p99, worst = latency(produce, out, seconds, events)
            rows.append((name, rate, steady, p50, p99, worst))
            print(f"  {name}: done", flush=True)
    client.close()
    floor_rate = rows[0][1]
    header = ("contender", "events/s", "x floor", "steady/s", "p50 ms", "p99 ms", "max ms")
    print(f"\n  {header[0]:<22}" + "".join(f"{cell:>10}" for cell in header[1:]))
    for name, rate, steady, p50, p99, worst in rows:
        cells = (f"{rate:,.0f}", f"{rate / floor_rate:.2f}", f"{steady:.0f}")
        cells += (f"{p50:.2f}", f"{p99:.2f}", f"{worst:.1f}")
        print(f"  {name:<22}" + "".join(f"{cell:>10}" for cell in cells))
    print(
        f"  events/s: {events:,} events from one producer, first commit to last call; "
        f"latency: commit to call at {RATE:.0f}/s asked for {seconds:.0f} s (steady/s: achieved)"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["floor-consumer"]:
        floor_consumer(*sys.argv[2:5])
    else:
        run(quick="--quick" in sys.argv)
