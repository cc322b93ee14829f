"""A live relay keeps the leases of the deliveries it holds, however long its receivers take.

A claim leases its rows for ``lease`` seconds; the relay's heartbeat renews them while the
relay holds them (running, or run and not yet recorded), so another relay claims none of
them and no delivery runs twice while its worker lives. On SQLite the heartbeat keeps the
database's relay lease too, and a relay that finds it taken stops its batch.
"""

from __future__ import annotations

import datetime
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, update
from sqlalchemy.pool import StaticPool

from tests.outbox.test_storage import pending_count, placed, spec
from tests.remote.conftest import wait_for
from tidings.outbox import Outbox, Relay
from tidings.outbox._records import utcnow

LEASE = 0.6  # the heartbeat renews every 0.2 s


@pytest.mark.parametrize(
    "durations",
    [[0.25] * 6, [1.5]],
    ids=["a batch longer than the lease", "a receiver longer than the lease"],
)
def test_a_delivery_held_by_a_live_relay_is_not_claimed_by_another(
    outbox: Outbox, durations: list[float]
) -> None:
    """Two relays, one batch of 1.5 s (two and a half leases): every delivery runs once."""
    started: list[int] = []
    runs: list[tuple[str, int]] = []

    def slow(n: int, **kwargs: Any) -> None:
        started.append(n)
        time.sleep(durations[n])
        runs.append((threading.current_thread().name, n))

    for n in range(len(durations)):
        outbox.write(placed, ["shop.mail"], None, {"n": n})
    relays = [
        Relay(
            outbox,
            receivers=[spec(slow)],
            lease=LEASE,
            poll_interval=0.05,
            batch_size=10,
            name=f"relay-{i}",
        )
        for i in range(2)
    ]
    threads = [threading.Thread(target=r.run, name=r.name) for r in relays]
    threads[0].start()
    try:
        wait_for(lambda: bool(started), 20, "the first delivery")
        threads[1].start()  # claims (PostgreSQL) or waits for the database (SQLite)
        wait_for(lambda: pending_count(outbox) == 0, 20, "every delivery")
        time.sleep(2 * LEASE)  # a lease let go by now would have been claimed again
    finally:
        for relay in relays:
            relay.stop()
        for thread in threads:
            if thread.is_alive():
                thread.join(30)
    times = Counter(n for _, n in runs)
    print(
        f"\nheld past the lease ({len(durations)} x {durations[0]} s, lease {LEASE} s): pushed "
        f"{len(durations)}, runs {len(runs)}, duplicated {len(runs) - len(times)}"
    )
    assert times == Counter(range(len(durations)))
    assert {name for name, _ in runs} == {"relay-0"}


def test_a_sqlite_relay_that_finds_its_relay_lease_taken_stops_its_batch(
    tmp_path: Path,
) -> None:
    """The heartbeat sees another holder of the relay lease: the relay records what ran,
    releases the rest with the attempt not counted, and waits for the lease again."""
    engine = create_engine(f"sqlite:///{tmp_path / 'taken.db'}")
    try:
        box = Outbox(engine)
        box.create_all()
        ran: list[int] = []

        def slow(n: int, **kwargs: Any) -> None:
            ran.append(n)
            time.sleep(0.15)

        for n in range(20):
            box.write(placed, ["shop.mail"], None, {"n": n})
        relay = Relay(box, receivers=[spec(slow)], lease=LEASE, poll_interval=0.05, batch_size=20)
        thread = threading.Thread(target=relay.run)
        thread.start()
        relay_table, pending = box.tables.relay, box.tables.pending
        try:
            wait_for(lambda: len(ran) >= 2, 20, "two deliveries")
            with engine.begin() as conn:  # another relay's takeover (as after a stall)
                later = utcnow() + datetime.timedelta(hours=1)
                conn.execute(update(relay_table).values(holder="intruder", lease_until=later))
            wait_for(lambda: len(ran) + pending_count(box) == 20, 20, "the done ones deleted")
            stopped_at = len(ran)
            time.sleep(2 * LEASE)
            assert len(ran) == stopped_at  # waiting for the lease, running nothing
            with engine.connect() as conn:
                assert conn.execute(select(pending.c.locked_by, pending.c.attempts)).all() == [
                    (None, 0)
                ] * (20 - stopped_at)
            with engine.begin() as conn:  # the intruder goes away
                conn.execute(relay_table.delete())
            wait_for(lambda: pending_count(box) == 0, 20, "every delivery")
        finally:
            relay.stop()
            thread.join(30)
        print(
            f"\nrelay lease taken mid-batch: pushed 20, stopped after {stopped_at}, ran {len(ran)}"
        )
        assert sorted(ran) == list(range(20))
        assert stopped_at < 20
    finally:
        engine.dispose()


@pytest.mark.parametrize("shared", [False, True], ids=["a pool", "StaticPool"])
def test_an_engine_sharing_one_connection_between_threads_gets_no_heartbeat(
    tmp_path: Path, shared: bool
) -> None:
    """While a batch runs, the heartbeat's thread runs; not with a StaticPool, whose one
    connection the receivers' sessions use too (the heartbeat's transaction would end theirs)."""
    if shared:
        options: dict[str, Any] = {
            "poolclass": StaticPool,
            "connect_args": {"check_same_thread": False},
        }
        engine = create_engine("sqlite://", **options)
    else:
        engine = create_engine(f"sqlite:///{tmp_path / 'pooled.db'}")
    try:
        box = Outbox(engine)
        box.create_all()
        seen: list[list[str]] = []

        def look(**kwargs: Any) -> None:
            seen.append(
                [t.name for t in threading.enumerate() if t.name.startswith("tidings lease")]
            )

        for n in range(2):
            box.write(placed, ["shop.mail"], None, {"n": n})
        Relay(box, receivers=[spec(look)], lease=LEASE, name="looking").run(once=True)
        expected = [] if shared else ["tidings lease heartbeat looking"]
        assert seen == [expected, expected]
        assert not [t for t in threading.enumerate() if t.name.startswith("tidings lease")]
    finally:
        engine.dispose()


def test_the_heartbeat_logs_a_renewal_it_cannot_make_and_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """While another connection holds the SQLite database locked, the renewals fail and are
    logged; the heartbeat goes on renewing once the lock is gone, and the delivery ends once."""
    path = tmp_path / "locked.db"
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})
    try:
        box = Outbox(engine)
        box.create_all()
        pending = box.tables.pending
        renewed: list[tuple[datetime.datetime, datetime.datetime]] = []
        started, locked, ran = threading.Event(), threading.Event(), threading.Event()

        def slow(**kwargs: Any) -> None:
            started.set()  # claimed: the relay needs the database no more until it returns
            locked.wait(10)
            time.sleep(1.0)  # the database is locked for 0.6 s of it
            with engine.connect() as conn:
                until = conn.execute(select(pending.c.locked_until)).scalar_one()
            renewed.append((until, utcnow()))
            time.sleep(0.5)
            ran.set()

        box.write(placed, ["shop.mail"], None, {})
        relay = Relay(box, receivers=[spec(slow)], lease=LEASE, name="locked-out")
        thread = threading.Thread(target=relay.run, kwargs={"once": True})
        thread.start()
        try:
            assert started.wait(20)
            lock = sqlite3.connect(path, isolation_level=None)
            try:
                lock.execute("BEGIN EXCLUSIVE")
                locked.set()
                time.sleep(0.6)
                lock.execute("COMMIT")
            finally:
                lock.close()
            assert ran.wait(20)
        finally:
            thread.join(30)
        assert pending_count(box) == 0
        assert "relay locked-out cannot renew the lease of the 1 deliveries it holds" in caplog.text
        # 0.4 s after the lock (1 s after the claim, whose lease was 0.6 s), the lease runs on:
        # renewed since the lock went.
        [(until, seen_at)] = renewed
        assert until > seen_at
    finally:
        engine.dispose()
