"""A Redis without persistence killed mid-run under a worker process: what is lost, what is not.

With ``--save '' --appendonly no`` a restarted Redis is empty: the stream, the groups, the
pending entries and the dedupe marks are gone. So the events the relay had published (their
outbox rows deleted once Redis accepted them) and no worker had finished are lost; that is
the documented cost of running queue delivery on a Redis without persistence. What the outbox
still held covers the rest: events committed while Redis was down stay in the outbox, the
relay publishes them once Redis is back, and the worker, finding its group gone, creates it
again and runs them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.outbox.processes import count
from tests.remote.conftest import Site, Worker, start_workers, stop_all, wait_for
from tests.transport.servers import RedisServer

pytestmark = [pytest.mark.fault, pytest.mark.redis]

WELCOME = "accounts.send_welcome"


@pytest.mark.parametrize("pool", ["threads", "asyncio"])
def test_redis_without_persistence_loses_only_what_it_had_accepted_and_not_run(
    tmp_path: Path, workers: list[Worker], redis_server: Callable[..., RedisServer], pool: str
) -> None:
    """Killed after the relay published a batch the worker was still running: the batch's
    unfinished events are lost; every event committed before it ran, and every event committed
    while Redis was down runs once Redis is back (the worker recreates its lost group)."""
    server = redis_server(aof=False)
    site = Site(tmp_path, server.url, "tidings-test")
    box = site.outbox()
    args = ["--receiver", WELCOME, "--poll", "0.05", "--claim-idle", "1", "--prefetch", "1"]
    args += ["--pool", pool]
    start_workers(site, workers, 1, *args, relay=True, TIDINGS_TEST_SLEEP="0.1")
    before = site.write(box, 20, WELCOME)
    wait_for(lambda: set(before) <= ran(site), 60, "the first events")
    accepted = site.write(box, 60, WELCOME, start=100)
    # The relay publishes the 60 rows within a poll or two; the worker needs about 6 s to run
    # them, so most are in Redis only when it dies.
    wait_for(lambda: box.status().pending == 0, 30, "the relay to publish the batch")
    server.kill()
    run_at_kill = len(set(accepted) & ran(site))
    while_down = site.write(box, 30, WELCOME, start=200)
    time.sleep(1.0)
    server.start()
    wait_for(lambda: set(while_down) <= ran(site), 90, "the events committed while down")
    assert stop_all(workers) == [0]
    seen = [e for e, _, _ in site.calls(WELCOME)]
    counts = count(before + accepted + while_down, seen)
    lost = set(accepted) - set(seen)
    log = workers[0].log.read_text(errors="replace")
    in_flight = len(accepted) - run_at_kill - len(lost)
    print(
        f"\nRedis SIGKILLed without persistence ({pool}): {counts}; of the batch in Redis at "
        f"the kill: {len(accepted)} published, {run_at_kill} run before it, {in_flight} in "
        f"flight (finished), {len(lost)} lost; committed while down {len(while_down)}, run "
        f"after the restart {len(set(while_down) & set(seen))}; group recreated: "
        f"{'lost group' in log}"
    )
    assert set(before) | set(while_down) <= set(seen)
    assert counts.lost == len(lost) > 0
    assert counts.strangers == 0
    assert "lost group" in log
    assert box.status().pending == 0


def ran(site: Site) -> set[str]:
    """The event ids the queue receiver finished."""
    return {e for e, _, _ in site.calls(WELCOME)}
