"""Claims under concurrency: SKIP LOCKED on PostgreSQL, leases that expire."""

from __future__ import annotations

import datetime
import uuid

import pytest
from sqlalchemy import Engine
from sqlalchemy import event as sa_event

from tidings import Signal
from tidings.outbox import Outbox
from tidings.outbox._insert import may_bypass
from tidings.outbox._records import utcnow

pytestmark = pytest.mark.postgres

ticked = Signal(name="clock.ticked")


@pytest.fixture
def pg_outbox(pg_engine: Engine) -> Outbox:
    """An outbox on a new PostgreSQL database, holding ten deliveries."""
    box = Outbox(pg_engine)
    box.create_all()
    for n in range(10):
        box.write(ticked, ["clock.listener"], None, {"n": n})
    return box


def test_concurrent_claims_take_disjoint_rows_without_waiting(pg_outbox: Outbox) -> None:
    """A claim skips the rows another open transaction has locked instead of waiting."""
    store = pg_outbox._store
    now = utcnow()
    with pg_outbox.engine.connect() as first, pg_outbox.engine.connect() as second:
        a = store.claim(first, "a", 6, 60, now)
        b = store.claim(second, "b", 6, 60, now)
        second.commit()
        first.commit()
    assert [row.id for row in a] == sorted(row.id for row in a)
    assert len(a) == 6
    assert len(b) == 4
    assert not {row.id for row in a} & {row.id for row in b}


def test_a_leased_row_comes_back_when_its_lease_expires(pg_outbox: Outbox) -> None:
    """Rows a worker leased are claimable by others only after the lease's end."""
    store = pg_outbox._store
    now = utcnow()
    with store.transaction() as conn:
        held = store.claim(conn, "dead-worker", 10, 30, now)
    with store.transaction() as conn:
        assert store.claim(conn, "other", 10, 30, now + datetime.timedelta(seconds=29)) == []
    with store.transaction() as conn:
        again = store.claim(conn, "other", 10, 30, now + datetime.timedelta(seconds=31))
    assert [row.id for row in again] == [row.id for row in held]
    assert {row.attempts for row in again} == {2}
    status = pg_outbox.status()
    assert (status.pending, status.in_flight) == (0, 10)


@pytest.mark.parametrize("kind", ["claim", "lock"])
def test_a_claim_walks_the_primary_key_on_a_table_without_statistics(
    pg_engine: Engine, kind: str
) -> None:
    """Thousands of rows, never analyzed (a fresh table, a burst before autovacuum): the claim
    takes the oldest rows by the primary key and stops at its limit; no scan and sort of the
    whole table per batch."""
    box = Outbox(pg_engine)
    box.create_all()
    rows = [box._store.row(uuid.uuid4(), "clock.ticked", "clock.listener", "{}", utcnow())]
    with pg_engine.begin() as conn:
        conn.execute(box.tables.pending.insert(), rows * 5000)
        statement = box._store._statement(kind, ("durable",), 50)
        compiled = statement.compile(dialect=pg_engine.dialect)
        now = utcnow()
        params = {**compiled.params, "now": now, "me": "a", "until": now, "done": "{}"}
        plan = "\n".join(
            line for (line,) in conn.exec_driver_sql(f"EXPLAIN {compiled}", params).all()
        )
    print(f"\n{kind} plan:\n{plan}")
    assert f"Index Scan using {box.tables.pending.name}_pkey" in plan
    assert "Seq Scan" not in plan
    assert "Sort" not in plan


def test_a_lease_write_keeps_each_claimed_row_on_its_page(pg_outbox: Outbox) -> None:
    """The pending table leaves half of each page free, so a claim's lease write (a new version
    of every claimed row) lands on the page of the old version, adding no index entry, for all
    but a few rows (on a full page a row moves, with its index entry)."""
    box = pg_outbox
    table = box.tables.pending.name
    rows = [box._store.row(uuid.uuid4(), "clock.ticked", "clock.listener", "{}", utcnow())]
    with box.engine.begin() as conn:
        conn.execute(box.tables.pending.insert(), rows * 490)  # 500 with the fixture's ten

    def pages() -> dict[int, int]:
        with box.engine.connect() as conn:
            found = conn.exec_driver_sql(f"SELECT id, (ctid::text::point)[0]::int FROM {table}")
            return {int(row_id): int(page) for row_id, page in found}

    before = pages()
    with box._store.transaction() as conn:
        claimed = box._store.claim(conn, "a", 500, 60, utcnow())
    after = pages()
    assert len(claimed) == 500
    assert len(set(before.values())) > 1
    moved = [row_id for row_id in before if after[row_id] != before[row_id]]
    assert len(moved) <= len(before) // 50  # full pages: nearly every row moves


def test_a_claim_around_sqlalchemy_returns_what_sqlalchemy_returns(pg_engine: Engine) -> None:
    """Two outboxes holding the same deliveries: the claim run on the DBAPI cursor returns the
    rows that the same claim run through ``Connection.execute()`` returns."""
    direct, through = (Outbox(pg_engine, prefix=f"{name}_{uuid.uuid4().hex[:8]}") for name in "ab")
    sent_at = datetime.datetime(2026, 12, 1, 9, 30, 15, 123456)
    rows = [
        direct._store.row(uuid.uuid4(), "clock.ticked", "clock.listener", f'{{"n":{n}}}', sent_at)
        for n in range(5)
    ]
    for box in (direct, through):
        box.create_all()
        with box.engine.begin() as conn:
            box._store.insert_rows(conn, rows)
    now = utcnow()
    assert direct._store._query("claim", ("durable",), 50).direct
    with direct._store.transaction() as conn:
        conn.exec_driver_sql("SELECT 1")  # begun, as a relay's claim connection is
        assert may_bypass(conn, pg_engine.dialect)
        around = direct._store.claim(conn, "a", 50, 60, now)
    seen: list[str] = []
    with through._store.transaction() as conn:
        # A cursor listener on the Connection: the claim must go through SQLAlchemy.
        sa_event.listen(conn, "before_cursor_execute", lambda *args: seen.append(args[2]))
        via = through._store.claim(conn, "a", 50, 60, now)
    assert len(seen) == 1
    assert seen[0].startswith("WITH done")
    assert len(around) == 5
    assert around == via
    assert {row.event_id for row in around} == {row["event_id"] for row in rows}


def test_a_claim_of_several_modes_goes_through_sqlalchemy(pg_outbox: Outbox) -> None:
    """A statement SQLAlchemy rebuilds per execution (the modes' expanding IN) is never run
    around it, and still claims."""
    query = pg_outbox._store._query("claim", ("durable", "queue"), 50)
    assert not query.direct
    with pg_outbox._store.transaction() as conn:
        claimed = pg_outbox._store.claim(conn, "a", 50, 60, utcnow(), ("durable", "queue"))
    assert len(claimed) == 10
