"""Benchmark: what durable delivery costs the producer, and how fast the relay drains.

* **producer**: one Session transaction that inserts one business row, sends ``signup`` and
  commits, without a receiver and with one ``delivery="durable"`` receiver (its row written on
  the Session's connection), on a SQLite file and on PostgreSQL; anchors in the same run: the
  same transaction with one more plain INSERT (what any extra statement costs), and the send
  made after the commit (its row in a transaction of its own: an extra commit). The contenders
  alternate transaction by transaction; the cells are medians per transaction, wall time.
  Target on PostgreSQL: at most 0.3 ms added per transaction.
* **relay** (PostgreSQL): events per second drained by ``Relay.run(once=True)`` with a trivial
  receiver (leasing its rows, the default, and with ``claim="lock"``), by one and by three
  relays in threads, against the floor: a hand-written loop that
  claims 50 rows with ``FOR UPDATE SKIP LOCKED``, decodes each payload with ``json.loads``,
  calls the same function and deletes the rows, in the same run. Target: at least 0.7 of the
  floor. Each drain takes 5000 events (long enough that a hiccup of the shared machine is a
  small part of it), filled by the database from one send written by ``Outbox.write()``
  (copies with their own event ids and payloads: a fill costs no time worth waiting for); the
  contenders alternate round by round, nine rounds; the cells are medians.

PostgreSQL rows are skipped (and say so) where the server named by ``TIDINGS_POSTGRES_URL`` is
unreachable.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, create_engine, insert, text
from sqlalchemy.orm import Session

from tidings import Signal
from tidings.outbox import DurableReceiver, Outbox, Relay

POSTGRES_URL = os.environ.get("TIDINGS_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

signup = Signal(name="bench.signup")
#: The producer benchmark's plain contenders send this one: the same send, no receiver.
unheard = Signal(name="bench.unheard")


def trivial(**kwargs: Any) -> None:
    """The receiver: does nothing."""


def welcome(**kwargs: Any) -> None:
    """The producer benchmark's durable receiver (never run here)."""


@contextlib.contextmanager
def postgres() -> Iterator[Engine | None]:
    """An engine on a new PostgreSQL database (dropped afterwards), or None if unreachable."""
    try:
        import psycopg

        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except Exception as exc:
        print(f"  PostgreSQL unreachable ({type(exc).__name__}): its rows are skipped")
        yield None
        return
    name = f"tidings_bench_{uuid.uuid4().hex[:8]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        base = POSTGRES_URL.rpartition("/")[0].replace("postgresql://", "postgresql+psycopg://")
        engine = create_engine(f"{base}/{name}")
        try:
            yield engine
        finally:
            engine.dispose()
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def producer_rows(engine: Engine, label: str, transactions: int) -> None:
    """Time business transactions: plain, with one more plain INSERT, with a durable receiver.

    The contenders alternate transaction by transaction (in a shuffled order each time), so a
    change of the machine's load hits all of them alike; each cell is a median per transaction.
    """
    metadata = MetaData()
    users = Table(
        "bench_users", metadata, Column("id", Integer, primary_key=True), Column("email", String)
    )
    audit = Table(
        "bench_audit", metadata, Column("id", Integer, primary_key=True), Column("email", String)
    )
    box = Outbox(engine, metadata=metadata)
    metadata.create_all(engine)
    counter = iter(range(10**9))
    session = Session(engine)
    add_user, add_audit = insert(users), insert(audit)

    def transaction(name: str) -> float:
        # The durable receiver stays connected to ``signup`` (as in an application, where the
        # first send after a connect also rebuilds the signal's plan); the plain contenders
        # make the same send on a signal without receivers.
        sent = signup if name in ("durable", "own") else unheard
        started = time.perf_counter()
        with session.begin():
            n = next(counter)
            session.execute(add_user, {"id": n, "email": "a@example.com"})
            if name == "insert":
                session.execute(add_audit, {"id": n, "email": "a@example.com"})
            if name != "own":
                sent.send(None, user_id=n)
        if name == "own":  # no transaction open: the row gets a transaction of its own
            sent.send(None, user_id=n)
        return time.perf_counter() - started

    times: dict[str, list[float]] = {"plain": [], "insert": [], "durable": [], "own": []}
    signup.connect(welcome, delivery="durable", name="bench.welcome")
    with box.installed():
        for n in range(transactions + 30):  # the first 30 rounds warm the pool and caches
            order = list(times)
            random.shuffle(order)
            for name in order:
                elapsed = transaction(name)
                if n >= 30:
                    times[name].append(elapsed)
    signup.disconnect(welcome)
    session.close()
    plain, anchor, durable, own = (statistics.median(times[name]) * 1e3 for name in times)
    print(
        f"  {label:<10} {plain:8.3f} ms {anchor:10.3f} ms {durable:10.3f} ms "
        f"{durable - plain:+9.3f} ms {durable - anchor:+11.3f} ms {durable / plain:7.2f}x "
        f"{own - plain:+11.3f} ms"
    )
    metadata.drop_all(engine)


def fill(box: Outbox, count: int) -> None:
    """Store ``count`` sends: one through ``Outbox.write()``, copied by the database.

    The copies differ from the first as sends do (their own event id, their own ``user_id``
    in the payload); writing each through ``write()`` would make the fills take longer than
    the drains they feed.
    """
    pending = box.tables.pending
    with box.engine.begin() as conn:
        first = box.write(signup, ["bench.welcome"], None, {"user_id": 0}, connection=conn)
        copied = [column.name for column in pending.columns if column.name != "id"]
        values = ", ".join(
            {
                "event_id": "gen_random_uuid()",
                "payload": "json_build_object('sender', NULL, 'user_id', n)::text",
            }.get(name, name)
            for name in copied
        )
        conn.execute(
            text(
                f"INSERT INTO {pending.name} ({', '.join(copied)}) "
                f"SELECT {values} FROM {pending.name}, generate_series(1, :more) AS n "
                "WHERE event_id = :first"
            ),
            {"more": count - 1, "first": first},
        )


def floor_worker(box: Outbox) -> None:
    """The hand-written relay: SKIP LOCKED claim of 50, call, delete, commit; until empty."""
    table = box.tables.pending.name
    while True:
        with box.engine.begin() as conn:
            rows = conn.execute(
                text(f"SELECT id, payload FROM {table} ORDER BY id LIMIT 50 FOR UPDATE SKIP LOCKED")
            ).all()
            if not rows:
                return
            for _, payload in rows:
                trivial(**json.loads(payload))
            conn.execute(
                text(f"DELETE FROM {table} WHERE id = ANY(:ids)"), {"ids": [r[0] for r in rows]}
            )


def drain(box: Outbox, workers: int, how: str) -> float:
    """Events per second drained by ``workers`` threads: floor loops, or relays claiming by
    ``how`` (``"lease"`` or ``"lock"``)."""
    spec = DurableReceiver(signup, "bench.welcome", trivial)
    count = box.status().pending

    def one() -> None:
        if how == "floor":
            floor_worker(box)
        else:
            Relay(box, receivers=[spec], batch_size=50, claim=how).run(once=True)

    threads = [threading.Thread(target=one) for _ in range(workers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    status = box.status()
    assert status.pending == 0, f"the outbox was not drained: {status}"
    assert status.dead == 0, f"deliveries failed: {status}"
    return count / elapsed


def relay_rows(engine: Engine, events: int, rounds: int) -> None:
    """Relay throughput against the floor, one and three workers, interleaved rounds."""
    box = Outbox(engine)
    box.create_all()
    for workers in (1, 3):
        rates: dict[str, list[float]] = {"floor": [], "lease": [], "lock": []}
        for _ in range(rounds):
            order = list(rates)
            random.shuffle(order)
            for name in order:
                fill(box, events)
                rates[name].append(drain(box, workers, name))
        floor, lease, lock = (statistics.median(rates[name]) for name in rates)
        print(
            f"  {workers} worker(s)  {floor:10.0f}/s {lease:10.0f}/s {lease / floor:8.2f} "
            f"{lock:10.0f}/s {lock / floor:8.2f}"
        )
    box.drop_all()


def run(quick: bool = False) -> None:
    """Print the producer and relay tables."""
    transactions, events, rounds = (60, 500, 3) if quick else (400, 5000, 9)
    print(
        "producer: a Session transaction inserting one row, send() and commit (median per "
        "transaction); anchor: the same with one more plain INSERT; own txn: the send after "
        "the commit, its row in a transaction of its own"
    )
    print(
        f"  {'database':<10} {'plain':>11} {'+ INSERT':>13} {'+ durable':>13} {'added':>12} "
        f"{'vs anchor':>14} {'ratio':>8} {'own txn':>14}"
    )
    with tempfile.TemporaryDirectory() as folder:
        sqlite = create_engine(f"sqlite:///{folder}/bench.db")
        producer_rows(sqlite, "SQLite", transactions)
        sqlite.dispose()
    with postgres() as engine:
        if engine is not None:
            producer_rows(engine, "PostgreSQL", transactions)
    print("  target: added <= 0.3 ms per transaction on PostgreSQL")
    print(f"relay on PostgreSQL: {events} events, trivial receiver (median events per second)")
    print(f"  {'':<11} {'floor':>12} {'relay':>12} {'ratio':>8} {'claim=lock':>12} {'ratio':>8}")
    with postgres() as engine:
        if engine is not None:
            relay_rows(engine, events, rounds)
    print("  target: relay >= 0.7 of the floor")
