"""The remote benchmark's Celery contender: commit, then ``task.delay()`` (the on_commit pattern).

Celery uses the same Redis as the other contenders as its broker, under a key prefix of its own
(kombu's ``global_keyprefix``), with no result backend (the task's result is not wanted). Its
worker is a separate process, ``celery -A bench.remote_celery worker --pool solo``: one loop
running the tasks, like the floor's consumer and the tidings worker (one thread per receiver);
for a trivial task it was at least as fast as ``--pool threads --concurrency 4`` here, with a
lower p99. ``BENCH_CELERY_POOL=threads:4`` (pool:concurrency) picks another. The task is the
same trivial receiver as the other contenders' (``bench.remote.note``).

This module is the worker's application too: imported by ``celery -A``, its ``app`` reads
``BENCH_REDIS_URL``, ``BENCH_PREFIX`` and ``BENCH_OUT`` from the environment. Celery is only in
the ``bench`` dependency group; ``bench.remote`` imports this module only where it is installed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_ready
from sqlalchemy import Engine, Table, insert

from bench.remote import (
    REDIS_URL,
    Contender,
    business_table,
    note,
    producer_env,
    start,
    stop,
)

#: The worker's pool and its size, ``pool:concurrency``.
POOL = os.environ.get("BENCH_CELERY_POOL", "solo:1")


def make_app(redis_url: str, prefix: str) -> Celery:
    """A Celery application on ``redis_url`` whose keys all start with ``prefix``."""
    app = Celery("bench", broker=redis_url, set_as_current=False)
    app.conf.update(
        task_default_queue=prefix,
        task_ignore_result=True,
        broker_transport_options={"global_keyprefix": f"{prefix}:"},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )

    @app.task(name="bench.trivial", shared=False)
    def trivial(n: int, sent: float) -> None:
        note(os.environ["BENCH_OUT"], n, sent)

    return app


app = make_app(
    os.environ.get("BENCH_REDIS_URL", REDIS_URL), os.environ.get("BENCH_PREFIX", "tidings-bench")
)


@worker_ready.connect
def _say_ready(**kwargs: Any) -> None:
    # Celery redirects sys.stdout to its logger in the worker; the benchmark reads this line.
    sys.__stdout__.write("consuming\n")
    sys.__stdout__.flush()


def celery_sender(engine: Engine, table: Table, celery: Celery) -> Callable[[int], None]:
    """The producer: commit the row, then ``delay()`` the task (lossy between the two)."""
    task = celery.tasks["bench.trivial"]

    def produce(n: int) -> None:
        with engine.begin() as conn:
            conn.execute(insert(table).values(n=n, at=0.0))
            sent = time.time()
        task.delay(n, sent)

    return produce


@contextlib.contextmanager
def celery_delay(engine: Engine, folder: Path, client: Any) -> Iterator[Contender]:
    """Celery: commit, then ``task.delay()``; a Celery worker process."""
    table = business_table(engine)
    prefix = f"tidings-bench-celery-{uuid.uuid4().hex[:8]}"
    out = folder / "celery.txt"
    names = {"BENCH_PREFIX": prefix, "BENCH_OUT": str(out)}
    env = producer_env("celery", engine, table, **names)
    pool, _, size = POOL.partition(":")
    print(f"  celery worker: --pool {pool} --concurrency {size or 1}", flush=True)
    worker = start(
        [
            *(sys.executable, "-m", "celery", "-A", "bench.remote_celery", "worker"),
            *("--pool", pool, "--concurrency", size or "1", "--loglevel", "WARNING"),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
        ],
        env,
        folder / "celery-worker.log",
        "consuming",
    )
    celery = make_app(REDIS_URL, prefix)
    try:
        yield Contender(celery_sender(engine, table, celery), out, table, env)
    finally:
        stop([worker])
        celery.close()
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
