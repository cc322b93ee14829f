"""An idle relay is woken by a commit that wrote a delivery, and falls back to its poll.

PostgreSQL: the write's ``NOTIFY`` (delivered at commit, never on rollback) wakes a relay
LISTENing in this process or another. SQLite: a commit in this process kicks its relays. The
relays here poll every 30 s, so a delivery within a few seconds came from a wake-up.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, MetaData, Table, text
from sqlalchemy.orm import Session

from tests.outbox.processes import calls, count, environment, send, start_worker
from tests.outbox.worker_app import welcomed
from tests.remote.conftest import wait_for
from tidings import Signal
from tidings.outbox import Event, Outbox, Relay
from tidings.outbox._wakeup import Wakeup, _kicks, channel_name

woke = Signal(name="tests.wakeup.woke")
ran: list[tuple[str, float]] = []
watched: list[Relay] = []  # a relay whose wake-up the receiver looks at while it runs
started_during: list[bool] = []


def note_woke(sender: Any, label: str, event: Event, **kwargs: Any) -> None:
    """The durable receiver: note the send's label and when it ran."""
    ran.append((label, time.monotonic()))
    for relay in watched:
        wakeup = relay.wakeup
        started_during.append(
            wakeup._listener is not None or wakeup in _kicks.get(wakeup.channel, set())
        )


woke.connect(note_woke, delivery="durable", name="tests.wakeup.note_woke")

LONG_POLL = 30.0


def send_one(box: Outbox, label: str, *, commit: bool = True) -> None:
    """Send ``woke`` in a Session transaction, committed or rolled back."""
    with box.installed(), Session(box.engine) as session:
        session.begin()
        woke.send(None, label=label)
        if commit:
            session.commit()
        else:
            session.rollback()


def ran_count(wanted: int) -> Callable[[], bool]:
    """A predicate: the receiver ran ``wanted`` times."""
    return lambda: len(ran) == wanted


def labels() -> list[str]:
    """The labels the receiver ran, in order."""
    return [label for label, _ in ran]


@pytest.fixture
def idle_relay(outbox: Outbox) -> Iterator[Relay]:
    """A relay of ``outbox`` in a thread, polling every 30 s, idle (its first claims done)."""
    ran.clear()
    relay = Relay(outbox, poll_interval=LONG_POLL).start()
    try:
        if outbox._store.postgresql:
            wait_for(lambda: relay.wakeup.listening, 10, "the relay's LISTEN connection")
        send_one(outbox, "settle")  # ran at once, or by the wake-up of its commit
        wait_for(lambda: relay.stats.done == 1, 10, "the first delivery")
        yield relay
    finally:
        relay.close(timeout=10)
        ran.clear()


def test_a_commit_wakes_the_idle_relay_long_before_its_poll(idle_relay: Relay) -> None:
    """Each committed send runs within seconds although the relay polls every 30 s."""
    for n in range(3):
        send_one(idle_relay.outbox, f"woken-{n}")
        wait_for(ran_count(n + 2), 10, f"delivery {n} by the wake-up")
    assert labels() == ["settle", "woken-0", "woken-1", "woken-2"]


def test_a_relay_stops_at_once_while_it_waits_for_its_poll(idle_relay: Relay) -> None:
    """close() wakes the waiting relay: it returns in seconds, not after the 30 s poll."""
    started = time.monotonic()
    idle_relay.close(timeout=10)
    assert time.monotonic() - started < 10
    assert idle_relay._thread is None


def test_a_rolled_back_send_wakes_nothing_and_is_not_delivered(outbox: Outbox) -> None:
    """A rolled-back write neither wakes a waiting relay nor leaves a row; a commit wakes it."""
    wakeup = Wakeup(outbox.engine, outbox.tables.pending, "test")
    wakeup.start()
    try:
        if outbox._store.postgresql:
            wait_for(lambda: wakeup.listening, 10, "the LISTEN connection")
        wakeup.wait(0)  # the wake-up of the connection itself
        send_one(outbox, "rolled back", commit=False)
        assert wakeup.wait(1.0) is False
        assert outbox.status().pending == 0
        send_one(outbox, "committed")
        assert wakeup.wait(10) is True
    finally:
        wakeup.close()


def test_channels_follow_the_table_name_and_schema() -> None:
    """Two prefixes give two channels; the schema qualifies them; long names fit 63 bytes."""
    metadata = MetaData()
    assert channel_name(Table("shop_outbox", metadata)) == "shop_outbox"
    assert channel_name(Table("blog_outbox", metadata)) == "blog_outbox"
    assert channel_name(Table("shop_outbox", metadata, schema="eu")) == "eu.shop_outbox"
    long_a, long_b = "a" * 60 + "_one", "a" * 60 + "_two"
    shortened = {channel_name(Table(name, metadata)) for name in (long_a, long_b)}
    assert len(shortened) == 2
    assert all(len(name.encode()) <= 63 for name in shortened)


@pytest.mark.postgres
def test_two_prefixes_in_one_database_do_not_wake_each_other(pg_engine: Engine) -> None:
    """A commit to one outbox notifies its own channel only, never the other prefix's; an
    outbox built with wake=False notifies nothing."""
    shop, blog = Outbox(pg_engine, prefix="shop_outbox"), Outbox(pg_engine, prefix="blog_outbox")
    shop.create_all()
    blog.create_all()
    url = pg_engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute('LISTEN "shop_outbox"')
        send_one(blog, "to the blog")
        assert list(listener.notifies(timeout=1.0)) == []
        send_one(shop, "to the shop")
        heard = list(listener.notifies(timeout=5.0, stop_after=1))
        send_one(Outbox(pg_engine, prefix="shop_outbox", wake=False), "unheard")
        assert list(listener.notifies(timeout=1.0)) == []
    assert [note.channel for note in heard] == ["shop_outbox"]


def _terminate_listeners(engine: Engine) -> int:
    """pg_terminate_backend() every LISTEN connection of the database; return how many."""
    with engine.connect() as conn:
        killed = conn.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND query LIKE 'LISTEN %'"
            )
        )
    return int(killed or 0)


@pytest.mark.postgres
@pytest.mark.fault
def test_a_killed_listen_connection_falls_back_to_the_poll_and_reconnects(
    pg_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """The LISTEN backend terminated again and again: every send is still delivered (by the
    poll, or by the catch-up wake-up of a reconnection), the loss is logged once per outage,
    and the listener reconnects and wakes the relay again."""
    box = Outbox(pg_engine, prefix=f"outbox_{uuid.uuid4().hex[:8]}")
    box.create_all()
    ran.clear()
    relay = Relay(box, poll_interval=0.5).start()
    stop_killing = threading.Event()
    kills: list[int] = []

    def keep_killing() -> None:
        while not stop_killing.wait(0.1):
            kills.append(_terminate_listeners(pg_engine))

    killer = threading.Thread(target=keep_killing, daemon=True)
    try:
        wait_for(lambda: relay.wakeup.listening, 10, "the LISTEN connection")
        killer.start()
        pushed = [f"under-fire-{n}" for n in range(20)]
        for label in pushed:
            send_one(box, label)
            time.sleep(0.05)
        wait_for(lambda: len(ran) >= len(pushed), 30, "every send while the listener dies")
        stop_killing.set()
        killer.join(5)
        print(f"LISTEN connections killed: {sum(kills)}; {count(pushed, labels())}")
        assert sum(kills) >= 1
        assert sorted(labels()) == sorted(pushed)
        connects = relay.wakeup.connects
        assert connects >= 2, "the listener never reconnected"
        wait_for(lambda: relay.wakeup.listening, 35, "the listener back")
        relay.poll_interval = LONG_POLL  # from its next wait on, only a wake-up is fast
        time.sleep(0.6)  # the wait in progress (0.5 s) ends
        send_one(box, "after the outage")
        wait_for(lambda: "after the outage" in labels(), 10, "a wake-up after the reconnection")
    finally:
        stop_killing.set()
        relay.close(timeout=10)
        box.drop_all()
        ran.clear()
    lost = [r for r in caplog.records if "lost its LISTEN connection" in r.getMessage()]
    back = [r for r in caplog.records if "listens again" in r.getMessage()]
    assert 1 <= len(lost) <= sum(kills)
    assert len(back) >= 1


@pytest.mark.postgres
def test_a_relay_in_another_process_is_woken_by_the_notify(
    pg_engine: Engine, tmp_path: Path
) -> None:
    """``tidings worker --poll 30`` in its own process runs a send committed here within
    seconds: the NOTIFY crosses processes."""
    box = Outbox(pg_engine)
    box.create_all()
    log = tmp_path / "calls.txt"
    url = pg_engine.url.render_as_string(hide_password=False)
    worker = start_worker(["--poll", str(LONG_POLL)], environment(url, log))
    try:
        first = send(box, welcomed, 1)
        wait_for(lambda: calls(log) == first, 60, "the worker's first delivery")
        # Its row deleted: the relay's next claim committed, it found nothing and now waits.
        wait_for(lambda: box.status().pending == 0, 30, "the worker idle again")
        second = send(box, welcomed, 1)
        wait_for(lambda: calls(log) == first + second, 10, "the delivery woken by NOTIFY")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.communicate(timeout=30)
        finally:
            if worker.poll() is None:
                worker.kill()


def test_wake_ups_are_logged_nowhere_when_all_is_well(
    idle_relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    """A healthy wake-up writes no warning."""
    caplog.set_level(logging.INFO, logger="tidings.outbox")
    send_one(idle_relay.outbox, "quiet")
    wait_for(lambda: len(ran) == 2, 10, "the woken delivery")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_drain_starts_no_wake_up(outbox: Outbox) -> None:
    """run(once=True) never waits, so while it runs no wake-up is started (no LISTEN
    connection on PostgreSQL, no kick registered on SQLite)."""
    ran.clear()
    send_one(outbox, "drained")
    relay = Relay(outbox, poll_interval=LONG_POLL)
    watched.append(relay)
    try:
        relay.run(once=True)
    finally:
        watched.clear()
    assert labels() == ["drained"]
    assert started_during == [False]
    ran.clear()
    started_during.clear()
