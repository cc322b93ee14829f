"""The outbox tables, the claim and its leases, retries and dead letters."""

from __future__ import annotations

import datetime
import decimal
import threading
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, func, insert, inspect, select, text, update

from tests.remote.conftest import wait_for
from tidings import Signal, TidingsValueError
from tidings.outbox import DurableReceiver, Event, Outbox, Relay, RelayBusyError
from tidings.outbox._records import utcnow

placed = Signal(name="shop.order_placed")


@pytest.fixture(params=["lease", "lock"])
def claim(request: pytest.FixtureRequest, engine: Engine) -> str:
    """How the relays of the test claim their rows; ``lock`` on PostgreSQL only."""
    mode: str = request.param
    if mode == "lock" and engine.dialect.name != "postgresql":
        pytest.skip("claim='lock' is PostgreSQL's")
    return mode


def pending_count(outbox: Outbox) -> int:
    """How many deliveries are in the pending table."""
    with outbox.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(outbox.tables.pending)).scalar_one()


class Recorder:
    """A receiver that records its calls and fails the first ``fail`` of them."""

    def __init__(self, fail: int = 0) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = fail

    def __call__(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)
        if len(self.calls) <= self.fail:
            raise RuntimeError(f"failure {len(self.calls)}")


def spec(func: Any, name: str = "shop.mail", **options: Any) -> DurableReceiver:
    """A durable receiver of ``placed``."""
    return DurableReceiver(placed, name, func, **options)


def test_tables_are_created_with_the_configured_names(engine: Engine) -> None:
    """create_all() adds the three tables named from the prefix to the given MetaData."""
    metadata = MetaData()
    box = Outbox(engine, metadata=metadata, prefix="events_out")
    box.create_all()
    assert set(metadata.tables) == {"events_out", "events_out_dead", "events_out_relay"}
    assert {"events_out", "events_out_dead", "events_out_relay"} <= set(
        inspect(engine).get_table_names()
    )
    box.drop_all()
    assert not {"events_out", "events_out_dead"} & set(inspect(engine).get_table_names())


@pytest.mark.postgres
@pytest.mark.parametrize("claim", ["lease", "lock"])
def test_tables_in_another_schema_are_written_claimed_and_woken(
    pg_engine: Engine, claim: str
) -> None:
    """With ``schema=`` on PostgreSQL the tables live there; sends, claims and the commit's
    wake-up work as in the default schema."""
    with pg_engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA eu"))
    box = Outbox(pg_engine, schema="eu", prefix="shop_outbox")
    box.create_all()
    assert set(inspect(pg_engine).get_table_names(schema="eu")) == {
        "shop_outbox",
        "shop_outbox_dead",
        "shop_outbox_relay",
    }
    recorder = Recorder()
    for n in range(3):
        box.write(placed, ["shop.mail"], None, {"n": n})
    Relay(box, claim=claim, receivers=[spec(recorder)]).run(once=True)
    assert [call["n"] for call in recorder.calls] == [0, 1, 2]
    ran: list[int] = []

    def mail(n: int, **kwargs: Any) -> None:
        ran.append(n)

    def wait_until(predicate: Any) -> bool:
        deadline = time.monotonic() + 10
        while not predicate() and time.monotonic() < deadline:
            time.sleep(0.02)
        return bool(predicate())

    # The poll is a minute off: once the relay is idle, only the NOTIFY on the schema's
    # channel runs a new send within seconds.
    with Relay(box, claim=claim, receivers=[spec(mail)], poll_interval=60) as relay:
        assert wait_until(lambda: relay.wakeup.listening)
        box.write(placed, ["shop.mail"], None, {"n": 8})
        assert wait_until(lambda: relay.stats.done == 1)
        box.write(placed, ["shop.mail"], None, {"n": 9})
        assert wait_until(lambda: ran == [8, 9])
    assert box.status().pending == 0


def test_a_delivery_runs_its_receiver_once_with_the_event(outbox: Outbox, claim: str) -> None:
    """A stored send runs the receiver with its arguments and event, then is deleted."""
    recorder = Recorder()
    event_id = outbox.write(placed, ["shop.mail"], None, {"order": 7})
    Relay(outbox, claim=claim, receivers=[spec(recorder)]).run(once=True)
    [call] = recorder.calls
    event = call.pop("event")
    assert call == {"signal": placed, "sender": None, "order": 7}
    assert isinstance(event, Event)
    assert (event.id, event.attempt, event.signal, event.receiver) == (
        event_id,
        1,
        "shop.order_placed",
        "shop.mail",
    )
    assert event.sent_at.tzinfo is datetime.timezone.utc
    assert pending_count(outbox) == 0


def test_a_write_on_a_rolled_back_transaction_leaves_nothing(outbox: Outbox, claim: str) -> None:
    """Deliveries written on a connection exist only if its transaction commits."""
    with outbox.engine.connect() as conn:
        outbox.write(placed, ["shop.mail"], None, {"order": 1}, connection=conn)
        conn.rollback()
        outbox.write(placed, ["shop.mail"], None, {"order": 2}, connection=conn)
        conn.commit()
    recorder = Recorder()
    Relay(outbox, claim=claim, receivers=[spec(recorder)]).run(once=True)
    assert [call["order"] for call in recorder.calls] == [2]


def test_a_send_for_two_receivers_completes_each_separately(outbox: Outbox, claim: str) -> None:
    """A failing receiver is retried alone; the one that succeeded does not run again."""
    good, bad = Recorder(), Recorder(fail=1)
    outbox.write(placed, ["shop.good", "shop.bad"], None, {"order": 3})
    specs = [spec(good, "shop.good"), spec(bad, "shop.bad", backoff=0.0, backoff_max=0.0)]
    relay = Relay(outbox, claim=claim, receivers=specs)
    relay.run(once=True)
    assert (len(good.calls), len(bad.calls)) == (1, 2)
    assert [call["event"].attempt for call in bad.calls] == [1, 2]
    assert good.calls[0]["event"].id == bad.calls[0]["event"].id
    assert (relay.stats.done, relay.stats.retried, relay.stats.dead) == (2, 1, 0)


def test_a_failed_attempt_waits_for_its_backoff(outbox: Outbox, claim: str) -> None:
    """After a failure the delivery is due again only after the backoff delay."""
    bad = Recorder(fail=5)
    outbox.write(placed, ["shop.mail"], None, {})
    before = utcnow()
    Relay(outbox, claim=claim, receivers=[spec(bad, backoff=10.0, backoff_max=20.0)]).run(once=True)
    assert len(bad.calls) == 1
    with outbox.engine.connect() as conn:
        row = conn.execute(select(outbox.tables.pending)).one()
    assert row.attempts == 1
    assert row.locked_by is None
    assert row.last_error == "RuntimeError: failure 1"
    assert before + datetime.timedelta(seconds=5) <= row.available_at
    assert row.available_at <= utcnow() + datetime.timedelta(seconds=10)


def test_backoff_grows_exponentially_within_bounds() -> None:
    """The delay after attempt n lies in [b/2, b] with b = min(backoff * 2**(n-1), backoff_max)."""
    receiver = spec(Recorder(), backoff=1.0, backoff_max=8.0)
    for attempt, bound in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0), (5000, 8.0)]:
        delays = [receiver.delay(attempt) for _ in range(50)]
        assert all(bound / 2 <= delay <= bound for delay in delays)
        assert len(set(delays)) > 1


@pytest.mark.parametrize(
    ("argument", "value", "why"),
    [
        ("batch_size", 0, "at least 1"),
        ("lease", 0, "a positive number of seconds"),
        ("lease", -1.0, "a positive number of seconds"),
        ("poll_interval", 0, "a positive number of seconds"),
        ("unknown_delay", 0, "a positive number of seconds"),
        ("unknown_delay", -5.0, "a positive number of seconds"),
        ("progress_interval", 0, "a positive number of seconds"),
        ("progress_interval", float("nan"), "a positive number of seconds"),
    ],
)
def test_a_relay_refuses_a_count_or_a_delay_it_cannot_run_with(
    outbox: Outbox, argument: str, value: Any, why: str
) -> None:
    """Relay() raises TidingsValueError naming the argument and its value."""
    with pytest.raises(
        TidingsValueError, match=rf"Relay\({argument}=\.\.\.\) must be {why}"
    ) as caught:
        Relay(outbox, receivers=[], **{argument: value})
    assert f"got {value!r}" in str(caught.value)


def test_the_last_failed_attempt_moves_the_delivery_to_the_dead_letters(
    outbox: Outbox, claim: str
) -> None:
    """After max_attempts the delivery is a dead letter with the error and traceback."""
    bad = Recorder(fail=10)
    outbox.write(placed, ["shop.mail"], None, {"order": 4})
    receivers = [spec(bad, max_attempts=3, backoff=0.0, backoff_max=0.0)]
    relay = Relay(outbox, claim=claim, receivers=receivers)
    relay.run(once=True)
    assert len(bad.calls) == 3
    assert pending_count(outbox) == 0
    [letter] = outbox.dead_letters()
    assert (letter.receiver, letter.signal, letter.attempts) == ("shop.mail", placed.name, 3)
    assert letter.error == "RuntimeError: failure 3"
    assert "Traceback (most recent call last)" in letter.traceback
    assert "failure 3" in letter.traceback
    status = outbox.status()
    assert (status.pending, status.in_flight, status.dead) == (0, 0, 1)


def test_retry_brings_dead_letters_back_with_fresh_attempts(outbox: Outbox, claim: str) -> None:
    """retry() moves a dead letter back; the next relay runs it again from attempt 1."""
    flaky = Recorder(fail=1)
    outbox.write(placed, ["shop.mail"], None, {"order": 5})
    receivers = [spec(flaky, max_attempts=1)]
    Relay(outbox, claim=claim, receivers=receivers).run(once=True)
    [letter] = outbox.dead_letters()
    assert outbox.retry([letter.id + 1000]) == 0
    assert outbox.retry([letter.id]) == 1
    assert outbox.dead_letters() == []
    Relay(outbox, claim=claim, receivers=receivers).run(once=True)
    assert [call["event"].attempt for call in flaky.calls] == [1, 1]
    assert flaky.calls[0]["event"].id == flaky.calls[1]["event"].id
    assert pending_count(outbox) == 0


def test_purge_deletes_only_old_dead_letters(outbox: Outbox, claim: str) -> None:
    """purge(older_than) keeps dead letters that failed more recently."""
    outbox.write(placed, ["shop.mail"], None, {})
    Relay(outbox, claim=claim, receivers=[spec(Recorder(fail=1), max_attempts=1)]).run(once=True)
    assert outbox.purge(datetime.timedelta(hours=1)) == 0
    assert len(outbox.dead_letters()) == 1
    assert outbox.purge(0) == 1
    assert outbox.dead_letters() == []


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda box: box.purge(-1), r"purge\(older_than=...\) must not be negative, got -1"),
        (lambda box: box.purge(float("nan")), r"must not be negative, got nan"),
        (lambda box: box.purge(1e300), r"purge\(older_than=1e\+300\) reaches back before the"),
        (lambda box: box.purge(datetime.timedelta(days=999_999_999)), r"reaches back before"),
        (lambda box: box.dead_letters(limit=0), r"limit=...\) takes None or an int >= 1, got 0"),
        (lambda box: box.dead_letters(limit=-1), r"got -1"),
        (lambda box: box.dead_letters(limit=2.5), r"got 2.5"),
    ],
    ids=["negative", "nan", "huge", "huge delta", "limit 0", "limit -1", "limit 2.5"],
)
def test_dead_letter_operations_refuse_arguments_they_cannot_honour(
    outbox: Outbox, call: Any, match: str
) -> None:
    """purge() and dead_letters() name a bad argument, before any statement runs."""
    with pytest.raises(TidingsValueError, match=match):
        call(outbox)


def test_a_delivery_for_an_unknown_receiver_stays_and_is_reported(
    outbox: Outbox, caplog: pytest.LogCaptureFixture, claim: str
) -> None:
    """A worker that does not know a receiver keeps its delivery and logs its name."""
    outbox.write(placed, ["shop.gone"], None, {})
    relay = Relay(outbox, claim=claim, receivers=[], unknown_delay=3600)
    relay.run(once=True)
    assert relay.stats.unknown_receivers == {(placed.name, "shop.gone")}
    assert "'shop.gone'" in caplog.text
    with outbox.engine.connect() as conn:
        row = conn.execute(select(outbox.tables.pending)).one()
    assert (row.attempts, row.locked_by) == (0, None)
    assert row.available_at > utcnow() + datetime.timedelta(minutes=59)


def test_a_base_exception_stops_the_relay_and_releases_the_rest(outbox: Outbox, claim: str) -> None:
    """KeyboardInterrupt in a receiver propagates; finished work is kept, the rest is due."""
    calls: list[int] = []

    def receiver(order: int, **kwargs: Any) -> None:
        calls.append(order)
        if order == 2:
            raise KeyboardInterrupt

    for order in (1, 2, 3):
        outbox.write(placed, ["shop.mail"], None, {"order": order})
    with pytest.raises(KeyboardInterrupt):
        Relay(outbox, claim=claim, receivers=[spec(receiver)]).run(once=True)
    with outbox.engine.connect() as conn:
        rows = conn.execute(select(outbox.tables.pending).order_by("id")).all()
    assert [(row.attempts, row.locked_by) for row in rows] == [(0, None), (0, None)]
    calls.clear()
    Relay(outbox, claim=claim, receivers=[spec(lambda order, **kw: calls.append(order))]).run(
        once=True
    )
    assert calls == [2, 3]


class Unprintable(Exception):
    """An exception whose text cannot be made: the relay fails while noting the failure."""

    def __str__(self) -> str:
        raise RuntimeError("no text")


def test_a_relay_failing_midway_in_a_batch_leaves_every_delivery_it_took(
    outbox: Outbox, claim: str
) -> None:
    """The relay itself raises while running a batch (here: formatting a receiver's error):
    the deliveries done stay done, and every other one of the batch is still pending, none
    lost (with claim="lock" they are put back as they were; leases keep theirs)."""
    calls: list[int] = []

    def receiver(order: int, **kwargs: Any) -> None:
        calls.append(order)
        if order == 2:
            raise Unprintable

    for order in (1, 2, 3):
        outbox.write(placed, ["shop.mail"], None, {"order": order})
    with pytest.raises(RuntimeError, match="no text"):
        Relay(outbox, claim=claim, receivers=[spec(receiver)]).run(once=True)
    assert calls == [1, 2]
    with outbox.engine.connect() as conn:
        rows = conn.execute(select(outbox.tables.pending).order_by("id")).all()
    assert [row.attempts for row in rows] == ([0, 0] if claim == "lock" else [1, 1])


def test_a_format_1_row_stored_literally_is_read(outbox: Outbox, claim: str) -> None:
    """A row of format 1, inserted as literal column values (what this release stores, and what
    a later release's worker must read during a rolling deploy), runs with its arguments."""
    event_id = uuid.UUID("6c1f3a52-8a4b-4f4e-9d7e-0c2b1e9a7d10")
    payload = (
        '{"sender":null,"order":7,"total":{"$t":"decimal","v":"9.90"},'
        '"at":{"$t":"datetime","v":"2026-12-01T09:30:00+00:00"},'
        '"tags":{"$t":"tuple","v":["a","b"]}}'
    )
    sent_at = datetime.datetime(2026, 12, 1, 9, 30)
    with outbox.engine.begin() as conn:
        conn.execute(
            insert(outbox.tables.pending).values(
                event_id=event_id,
                format=1,
                signal="shop.order_placed",
                receiver="shop.mail",
                delivery="durable",
                order_key=None,
                payload=payload,
                sent_at=sent_at,
                available_at=sent_at,
                attempts=0,
            )
        )
    recorder = Recorder()
    Relay(outbox, claim=claim, receivers=[spec(recorder)]).run(once=True)
    [call] = recorder.calls
    event = call.pop("event")
    assert call == {
        "signal": placed,
        "sender": None,
        "order": 7,
        "total": decimal.Decimal("9.90"),
        "at": datetime.datetime(2026, 12, 1, 9, 30, tzinfo=datetime.timezone.utc),
        "tags": ("a", "b"),
    }
    assert (event.id, event.attempt, event.sent_at) == (
        event_id,
        1,
        sent_at.replace(tzinfo=datetime.timezone.utc),
    )
    assert outbox.dead_letters() == []


def test_a_table_the_worker_cannot_find_is_a_dead_letter_with_the_reason(
    outbox: Outbox, claim: str
) -> None:
    """A stored Table name no instrumented MetaData of the worker holds: dead letter, saying so."""
    outbox.write(placed, ["shop.mail"], None, {"n": 1})
    table = outbox.tables.pending
    with outbox.engine.begin() as conn:
        conn.execute(update(table).values(payload='{"sender":{"$t":"table","v":"nowhere"}}'))
    recorder = Recorder()
    Relay(outbox, claim=claim, receivers=[spec(recorder)]).run(once=True)
    assert recorder.calls == []
    [letter] = outbox.dead_letters()
    assert letter.error.startswith("the stored arguments cannot be read")
    assert "table 'nowhere' is in the MetaData of 0 instrumented registries" in letter.error


def test_unreadable_deliveries_go_to_the_dead_letters_with_the_reason(
    outbox: Outbox, claim: str
) -> None:
    """A row of a newer format, or with a broken payload, becomes a dead letter at once."""
    outbox.write(placed, ["shop.mail"], None, {"n": 1})
    outbox.write(placed, ["shop.mail"], None, {"n": 2})
    table = outbox.tables.pending
    with outbox.engine.begin() as conn:
        first, second = conn.execute(select(table.c.id).order_by(table.c.id)).scalars()
        conn.execute(update(table).where(table.c.id == first).values(format=99))
        conn.execute(update(table).where(table.c.id == second).values(payload="[1"))
    recorder = Recorder()
    Relay(outbox, claim=claim, receivers=[spec(recorder)]).run(once=True)
    assert recorder.calls == []
    errors = sorted(letter.error for letter in outbox.dead_letters())
    assert errors[0].startswith("stored in format 99; this release of tidings reads formats up")
    assert errors[1].startswith("the stored arguments cannot be read: JSONDecodeError")


def test_a_relay_thread_delivers_until_closed(outbox: Outbox, claim: str) -> None:
    """A started relay delivers what is written meanwhile; close() stops it."""
    done = threading.Event()

    def receiver(**kwargs: Any) -> None:
        done.set()

    with Relay(outbox, claim=claim, receivers=[spec(receiver)], poll_interval=0.02) as relay:
        outbox.write(placed, ["shop.mail"], None, {})
        assert done.wait(30)
    assert relay.stats.done == 1
    assert relay._thread is None


def test_a_second_sqlite_relay_waits_or_says_who_runs(tmp_path: Any) -> None:
    """On SQLite one relay runs per database; another refuses (wait=False) or waits for it."""
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{tmp_path / 'one.db'}")
    try:
        box = Outbox(engine)
        box.create_all()
        # The first relay knows no receiver: it puts a delivery back for a moment.
        first = Relay(
            box, receivers=[], name="first-relay", poll_interval=0.02, unknown_delay=0.05
        ).start()
        recorder = Recorder()
        second = Relay(box, receivers=[spec(recorder)], name="second-relay", poll_interval=0.02)
        waiting = threading.Thread(target=second.run)
        try:
            _wait_for_lease(box)
            with pytest.raises(RelayBusyError, match="another relay \\(first-relay\\) holds"):
                Relay(box, receivers=[], wait=False).run(once=True)
            box.write(placed, ["shop.mail"], None, {"order": 1})
            waiting.start()
            time.sleep(0.3)
            assert waiting.is_alive()  # waiting for the lease, not claiming
            assert recorder.calls == []
        finally:
            first.close()
        try:
            wait_for(lambda: bool(recorder.calls), 30, "the second relay's delivery")
        finally:
            second.stop()
            waiting.join(30)
        assert [call["order"] for call in recorder.calls] == [1]  # the lease let go: it ran
    finally:
        engine.dispose()


def _wait_for_lease(box: Outbox) -> None:
    """Wait until some relay holds the relay lease."""
    for _ in range(3000):
        with box.engine.connect() as conn:
            if conn.execute(select(box.tables.relay)).first() is not None:
                return
        threading.Event().wait(0.01)
    raise AssertionError("the relay never took its lease")  # pragma: no cover


def test_a_rolled_back_savepoint_drops_only_its_writes(outbox: Outbox, claim: str) -> None:
    """Inside a Session, a write in a rolled-back savepoint is gone, the outer one stays."""
    from sqlalchemy.orm import Session

    with Session(outbox.engine) as session, session.begin():
        outbox.write(placed, ["shop.mail"], None, {"order": 1}, connection=session.connection())
        savepoint = session.begin_nested()
        outbox.write(placed, ["shop.mail"], None, {"order": 2}, connection=session.connection())
        savepoint.rollback()
    recorder = Recorder()
    Relay(outbox, claim=claim, receivers=[spec(recorder)]).run(once=True)
    assert [call["order"] for call in recorder.calls] == [1]


def test_an_unstorable_argument_fails_the_senders_transaction(outbox: Outbox) -> None:
    """PayloadTypeError propagates out of the sender's transaction, which writes nothing."""
    from tidings.outbox import PayloadTypeError

    def business_transaction() -> None:
        with outbox.engine.begin() as conn:
            outbox.write(placed, ["shop.mail"], None, {"order": 1}, connection=conn)
            outbox.write(placed, ["shop.mail"], None, {"blob": object()}, connection=conn)

    with pytest.raises(PayloadTypeError, match=r"argument 'blob' for durable receiver shop\.mail"):
        business_transaction()
    assert pending_count(outbox) == 0
