"""The producer's write: one statement in the sender's transaction, seen as SQLAlchemy's.

With psycopg 3 and pysqlite the write runs around ``Connection.execute()`` on the same DBAPI
connection; these tests pin what that must not change: the round trips it costs, the values it
stores, the errors the sender gets, and the statement reaching SQLAlchemy's listeners and log
where the application has them.
"""

from __future__ import annotations

import datetime
import logging
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, Table, create_engine, func, select, text
from sqlalchemy import event as sa_event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from tidings import Signal
from tidings.outbox import Outbox, Relay
from tidings.outbox._schema import FORMAT_VERSION

noted = Signal(name="tests.producer_write.noted")
calls: list[dict[str, Any]] = []


def note(sender: Any, **kwargs: Any) -> None:
    """The durable receiver: records its arguments."""
    calls.append(kwargs)


@pytest.fixture
def connected(outbox: Outbox) -> Iterator[Outbox]:
    """``note`` connected durably to ``noted``, ``outbox`` installed."""
    calls.clear()
    noted.connect(note, delivery="durable", name="tests.producer_write.note")
    try:
        with outbox.installed():
            yield outbox
    finally:
        noted.disconnect(note)


def statements_of_send(
    outbox: Outbox, event: str = "before_cursor_execute", **kwargs: Any
) -> list[str]:
    """The statements an engine listener for ``event`` sees for one send in a Session."""
    seen: list[str] = []
    # Where each event passes the statement: (conn, cursor, statement, ...) for the cursor
    # events, (cursor, statement, ...) for the dialect's do_execute.
    at = 1 if event == "do_execute" else 2

    def record(*args: Any) -> None:
        seen.append(args[at])

    sa_event.listen(outbox.engine, event, record)
    try:
        with Session(outbox.engine) as session, session.begin():
            session.execute(text("SELECT 1"))
            seen.clear()
            noted.send(None, **kwargs)
    finally:
        sa_event.remove(outbox.engine, event, record)
    return seen


def test_a_cursor_listener_sees_the_write_as_one_statement(connected: Outbox) -> None:
    """With a cursor listener on the engine the write goes through SQLAlchemy: one INSERT."""
    seen = statements_of_send(connected, n=1)
    assert len(seen) == 1
    assert seen[0].startswith(f"INSERT INTO {connected.tables.pending.name} ")
    if connected.engine.dialect.name == "postgresql":
        assert "pg_notify(" in seen[0]  # the wake-up is part of the statement
    Relay(connected).run(once=True)
    assert [call["n"] for call in calls] == [1]


def test_a_do_execute_listener_sees_the_write(connected: Outbox) -> None:
    """With a dialect ``do_execute`` listener the write goes through SQLAlchemy, which calls it."""
    seen = statements_of_send(connected, "do_execute", n=3)
    assert [s.split()[:3] for s in seen] == [["INSERT", "INTO", connected.tables.pending.name]]


def test_an_engine_logging_statements_logs_the_write(
    connected: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Where SQLAlchemy logs statements, the log shows the write too."""
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine.Engine")
    try:
        with Session(connected.engine) as session, session.begin():
            noted.send(None, n=2)
    finally:
        logging.getLogger("sqlalchemy.engine.Engine").setLevel(logging.NOTSET)
    pending = connected.tables.pending.name
    assert any(f"INSERT INTO {pending} " in r.getMessage() for r in caplog.records)


def test_a_write_around_sqlalchemy_stores_what_sqlalchemy_would(outbox: Outbox) -> None:
    """A row written on the DBAPI connection reads back equal to one written by SQLAlchemy."""
    store = outbox._store
    sent_at = datetime.datetime(2026, 12, 1, 9, 30, 15, 123456)
    direct, through = uuid.uuid4(), uuid.uuid4()

    def row(event_id: uuid.UUID) -> dict[str, Any]:
        return store.row(event_id, "s.sig", "s.rcv", '{"n":1}', sent_at, "durable", "k")

    with outbox.engine.begin() as conn:
        store.insert_rows(conn, [row(direct)])
        conn.execute(store._writer.statement, row(through))
    table = outbox.tables.pending
    with outbox.engine.connect() as conn:
        found = {r.event_id: r._asdict() for r in conn.execute(select(table))}
    assert set(found) == {direct, through}
    for values in found.values():
        del values["id"], values["event_id"]
    assert found[direct] == found[through]
    assert found[direct]["sent_at"] == found[direct]["available_at"] == sent_at
    assert found[direct]["format"] == FORMAT_VERSION
    assert found[direct]["order_key"] == "k"


def test_several_rows_in_one_write_are_all_stored(outbox: Outbox) -> None:
    """One write of several receivers' rows stores each of them, in its transaction."""
    with outbox.engine.begin() as conn:
        outbox.write(noted, ["a.one", "a.two", "a.three"], None, {"n": 3}, connection=conn)
        inside = conn.execute(select(outbox.tables.pending.c.receiver)).scalars().all()
    assert sorted(inside) == ["a.one", "a.three", "a.two"]


def raised_in_the_direct_write(info: pytest.ExceptionInfo[BaseException]) -> bool:
    """Whether the exception came from the write run on the DBAPI connection (``run_direct``)."""
    return any(
        entry.name == "run_direct" and Path(entry.path).name == "_insert.py"
        for entry in info.traceback
    )


def test_a_database_error_in_the_write_is_sqlalchemys_and_fails_the_transaction(
    engine: Engine,
) -> None:
    """A write the database refuses raises SQLAlchemy's DBAPIError from the send, naming it."""
    missing = Outbox(engine, prefix=f"missing_{uuid.uuid4().hex[:8]}")  # no tables created
    business = Table(f"business_{uuid.uuid4().hex[:8]}", MetaData())
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {business.name} (id INTEGER PRIMARY KEY)")
    noted.connect(note, delivery="durable", name="tests.producer_write.note")
    try:
        with missing.installed(), Session(engine) as session:
            session.begin()
            session.execute(text(f"INSERT INTO {business.name} (id) VALUES (1)"))
            conn = session.connection()
            with pytest.raises(DBAPIError) as info:
                noted.send(None, n=4)
            assert raised_in_the_direct_write(info), info.traceback
            assert not info.value.connection_invalidated
            assert not conn.invalidated  # the connection outlives the refused statement
            session.rollback()
        assert missing.tables.pending.name in str(info.value)
        with engine.connect() as conn:
            assert conn.exec_driver_sql(f"SELECT count(*) FROM {business.name}").scalar() == 0
    finally:
        noted.disconnect(note)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE {business.name}")


def test_a_refused_write_of_several_rows_is_sqlalchemys_and_the_next_one_is_stored(
    outbox: Outbox,
) -> None:
    """A send's rows for several receivers go to the database together; a refusal of them is
    raised as SQLAlchemy's DBAPIError, and the connection's next write stores its rows."""
    missing = Outbox(outbox.engine, prefix=f"missing_{uuid.uuid4().hex[:8]}")
    receiver = outbox.tables.pending.c.receiver
    with outbox.engine.connect() as conn, conn.begin():
        with pytest.raises(DBAPIError) as info, conn.begin_nested():
            missing.write(noted, ["a.one", "a.two"], None, {"n": 7}, connection=conn)
        assert raised_in_the_direct_write(info), info.traceback
        assert missing.tables.pending.name in str(info.value)
        assert not info.value.connection_invalidated
        outbox.write(noted, ["b.one", "b.two"], None, {"n": 8}, connection=conn)
        stored = conn.execute(select(receiver)).scalars().all()
    assert sorted(stored) == ["b.one", "b.two"]


def test_a_write_after_a_refused_one_on_the_same_connection_is_stored(
    connected: Outbox,
) -> None:
    """A write the database refused, in a savepoint rolled back, leaves the next one working."""
    missing = Outbox(connected.engine, prefix=f"missing_{uuid.uuid4().hex[:8]}")
    with Session(connected.engine) as session, session.begin():
        with pytest.raises(DBAPIError), session.begin_nested():
            missing._store.insert_rows(session.connection(), [pending_row(missing, "refused")])
        noted.send(None, n=5)
        noted.send(None, n=6)
    Relay(connected).run(once=True)
    assert sorted(call["n"] for call in calls) == [5, 6]


def test_a_write_on_a_connection_that_replaced_an_invalidated_one_is_stored(
    connected: Outbox,
) -> None:
    """The pool's replacement for an invalidated DBAPI connection takes writes as the first did."""
    with Session(connected.engine) as session:
        with session.begin():
            noted.send(None, n=7)
            first = session.connection().connection.dbapi_connection
        session.connection().invalidate()
        session.rollback()
        with session.begin():
            noted.send(None, n=8)
            assert session.connection().connection.dbapi_connection is not first
    Relay(connected).run(once=True)
    assert sorted(call["n"] for call in calls) == [7, 8]


def pending_row(outbox: Outbox, receiver: str) -> dict[str, Any]:
    """The parameters of one pending delivery of ``noted`` to ``receiver``."""
    sent_at = datetime.datetime(2026, 12, 1, 9, 30)
    return outbox._store.row(uuid.uuid4(), "tests.producer_write.noted", receiver, "{}", sent_at)


def sent_by_client(pgconn: Any, action: Callable[[], object]) -> list[str]:
    """The protocol messages (``Parse``, ``Sync``...) libpq sends on ``pgconn`` in ``action``."""
    from psycopg import pq

    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            action()
        finally:
            pgconn.untrace()
        trace.seek(0)
        return [line.split("\t")[2] for line in trace if line.startswith("F\t")]


@pytest.mark.postgres
def test_on_postgresql_a_durable_send_costs_one_round_trip(pg_engine: Engine) -> None:
    """A send in a transaction sends one statement and waits once: the NOTIFY rides along."""
    box = Outbox(pg_engine)
    box.create_all()
    calls.clear()
    noted.connect(note, delivery="durable", name="tests.producer_write.note")
    try:
        with box.installed(), Session(pg_engine) as session, session.begin():
            session.execute(text("SELECT 1"))  # the transaction's BEGIN is behind us
            pgconn = session.connection().connection.driver_connection.pgconn  # type: ignore[union-attr]
            sent = sent_by_client(pgconn, lambda: noted.send(None, n=5))
        waits = [message for message in sent if message.split()[0] in ("Sync", "Query")]
        assert len(waits) == 1, sent
        Relay(box).run(once=True)
        assert [call["n"] for call in calls] == [5]
    finally:
        noted.disconnect(note)
        box.drop_all()


@pytest.mark.postgres
def test_on_postgresql_a_send_outside_a_transaction_costs_one_round_trip(
    pg_engine: Engine,
) -> None:
    """With no transaction open the row is one autocommitted statement: no BEGIN, no COMMIT."""
    engine = create_engine(pg_engine.url, pool_size=1, max_overflow=0)  # one connection to trace
    box = Outbox(engine)
    box.create_all()
    calls.clear()
    noted.connect(note, delivery="durable", name="tests.producer_write.note")
    raw = engine.raw_connection()
    pgconn = raw.driver_connection.pgconn  # type: ignore[union-attr]
    raw.close()
    try:
        with box.installed():
            sent = sent_by_client(pgconn, lambda: noted.send(None, n=6))
        waits = [message for message in sent if message.split()[0] in ("Sync", "Query")]
        assert len(waits) == 1, sent
        Relay(box).run(once=True)
        assert [call["n"] for call in calls] == [6]  # committed: another connection claimed it
    finally:
        noted.disconnect(note)
        box.drop_all()
        engine.dispose()


@pytest.mark.postgres
def test_a_connection_lost_in_the_write_is_invalidated_and_the_session_recovers(
    pg_engine: Engine,
) -> None:
    """A backend killed under the Session's transaction makes the send raise OperationalError
    with ``connection_invalidated``; the Session rolls back, goes on on a new connection, and
    no delivery was stored."""
    box = Outbox(pg_engine)
    box.create_all()
    noted.connect(note, delivery="durable", name="tests.producer_write.note")
    try:
        with box.installed(), Session(pg_engine) as session:
            session.begin()
            pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
            conn = session.connection()
            with pg_engine.connect() as killer:
                assert killer.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
                gone = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p")
                deadline = time.monotonic() + 10
                while killer.execute(gone, {"p": pid}).scalar() and time.monotonic() < deadline:
                    time.sleep(0.02)
                    killer.rollback()  # a new snapshot of pg_stat_activity
            with pytest.raises(OperationalError) as info:
                noted.send(None, n=7)
            assert raised_in_the_direct_write(info), info.traceback
            assert info.value.connection_invalidated
            assert conn.invalidated
            session.rollback()
            session.begin()
            assert session.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
            count = select(func.count()).select_from(box.tables.pending)
            noted.send(None, n=8)  # the Session writes again, on its new connection
            assert session.execute(count).scalar() == 1
            session.rollback()
        with pg_engine.connect() as fresh:
            assert fresh.execute(count).scalar() == 0
    finally:
        noted.disconnect(note)
        box.drop_all()
