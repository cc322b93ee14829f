"""Queue and broadcast delivery in action: who ran what.

``python examples/remote/demo.py`` (part of ``make demo``) needs no server: the in-memory
transport, two workers as threads of this process. Eight users sign up, each in a transaction
that stores a welcome mail (``delivery="queue"``: one worker sends it) and a cache refresh
(``delivery="broadcast"``: every worker node does it). The printout shows which worker ran what.

``python examples/remote/demo.py --redis [URL]`` (``make demo-redis``) runs the same against a
Redis (``TIDINGS_REDIS_URL``, default ``redis://127.0.0.1:6379/0``) with two worker processes,
``tidings worker app:outbox --no-relay --node worker-N``; its keys are removed afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
USERS = 8
WORKERS = ("worker-1", "worker-2")


def read_log(path: Path) -> list[tuple[str, str, int]]:
    """The calls so far: ``(worker, receiver, user id)`` each."""
    if not path.exists():
        return []
    rows = [line.split() for line in path.read_text().splitlines()]
    return [(who, what, int(user)) for who, what, user in rows]


def worker_process(env: dict[str, str], name: str) -> subprocess.Popen[str]:
    """Start a worker process that consumes both receivers as node ``name``."""
    command = [sys.executable, "-m", "tidings", "worker", "app:outbox", "--no-relay"]
    return subprocess.Popen(
        [*command, "--node", name, "--prefetch", "1"],
        cwd=HERE,
        env=dict(env, REMOTE_WORKER=name),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until_consuming(process: subprocess.Popen[str]) -> None:
    """Read the worker's output until it says it is consuming."""
    assert process.stdout is not None
    for line in process.stdout:
        if "tidings worker: consuming" in line:
            return
    raise SystemExit(f"a worker exited before consuming (status {process.wait()})")


def show(calls: list[tuple[str, str, int]]) -> bool:
    """Print who ran what; return whether every mail went out once and every node refreshed."""
    ran: dict[tuple[str, str], list[int]] = defaultdict(list)
    for who, what, user in calls:
        ran[(what, who)].append(user)
    print("welcome mails (queue: each one on one worker of the pool):")
    for who in WORKERS:
        print(f"  {who}: users {sorted(ran[('mail', who)])}")
    print("cache refreshes (broadcast: each one on every worker node):")
    for who in WORKERS:
        print(f"  {who}: users {sorted(ran[('cache', who)])}")
    mails = sorted(ran[("mail", WORKERS[0])] + ran[("mail", WORKERS[1])])
    everyone = list(range(1, USERS + 1))
    once = mails == everyone
    everywhere = all(sorted(ran[("cache", who)]) == everyone for who in WORKERS)
    print(
        f"every user welcomed exactly once: {once}; every node refreshed for every user: "
        f"{everywhere}"
    )
    return once and everywhere


def main() -> None:
    """Sign users up, relay, let two workers consume, show who ran what."""
    redis_url = None
    if "--redis" in sys.argv[1:]:
        rest = sys.argv[sys.argv.index("--redis") + 1 :]
        redis_url = (
            rest[0] if rest else os.environ.get("TIDINGS_REDIS_URL", "redis://127.0.0.1:6379/0")
        )
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "calls"
        env = dict(
            os.environ,
            REMOTE_DB=f"{folder}/remote.db",
            REMOTE_LOG=str(log),
            REMOTE_TRANSPORT=redis_url or "memory://",
            REMOTE_PREFIX=f"tidings-demo-{uuid.uuid4().hex[:8]}",
            PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        )
        os.environ.update(env)
        sys.path.insert(0, str(HERE))
        from app import outbox, user_signed_up

        from tidings.outbox import Relay, writing_on

        outbox.create_all()
        outbox.install()
        where = f"Redis at {redis_url}" if redis_url else "the in-memory transport"
        processes: list[subprocess.Popen[str]] = []
        consumers = []
        if redis_url:
            processes = [worker_process(env, name) for name in WORKERS]
            for process in processes:
                wait_until_consuming(process)
            print(f"two worker processes consume from {where}")
        else:
            for name in WORKERS:
                consumer = outbox.consumer(node=name, name=name, prefetch=1, block=0.05)
                consumer.ensure_groups()
                consumers.append(consumer)
            print(f"two workers (threads of this process) consume from {where}")

        with outbox.engine.begin() as conn, writing_on(conn):  # one business transaction
            for user_id in range(1, USERS + 1):
                user_signed_up.send(None, user_id=user_id)
        print(f"{USERS} users signed up: {outbox.status().pending} outbox rows stored")
        relay = Relay(outbox)
        relay.run(once=True)
        print(f"the relay published {relay.stats.done} entries")

        for consumer in consumers:
            consumer.start()
        deadline = time.monotonic() + 60
        while len(read_log(log)) < USERS * 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        for consumer in consumers:
            consumer.close()
        for process in processes:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        ok = show(read_log(log))
        if redis_url:
            from tidings.transport.redis import RedisTransport

            if isinstance(outbox.transport, RedisTransport):
                outbox.transport.delete_all()  # this run's keys
        outbox.engine.dispose()
        if not ok:
            raise SystemExit("a user was not welcomed once, or a node missed a refresh")


if __name__ == "__main__":
    main()
