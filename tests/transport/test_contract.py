"""The transport contract: publish, groups, pending entries, claims, dedupe, dead letters."""

from __future__ import annotations

import threading
import time

import pytest

from tests.transport.conftest import MakeTransport
from tidings import TidingsTypeError, TidingsValueError
from tidings.transport import Message, NoSuchGroupError, Transport, TransportError


def _events(messages: list[Message]) -> list[str]:
    return [m.event_id for m in messages]


def _publish(transport: Transport, n: int, topic: str = "t", start: int = 0) -> list[str]:
    return [transport.publish(topic, f"e{i}", f"body {i}".encode()) for i in range(start, n)]


def test_a_group_is_handed_what_was_published_in_order(transport: Transport) -> None:
    """Entries come back in publishing order with their event id, body, topic and id."""
    transport.ensure_group("t", "g")
    ids = _publish(transport, 3)
    got = transport.consume("t", "g", "c1", block=0)
    assert got == [Message(ids[i], "t", f"e{i}", f"body {i}".encode(), 1) for i in range(3)]


def test_publish_returns_increasing_ids(transport: Transport) -> None:
    """Entry ids are ``ms-seq`` strings that grow with every publish."""
    ids = _publish(transport, 50)
    keys = [tuple(int(p) for p in i.split("-")) for i in ids]
    assert keys == sorted(keys)
    assert len(set(ids)) == 50


def test_a_group_at_first_sees_earlier_entries(transport: Transport) -> None:
    """A group created with start="first" is handed entries published before it existed."""
    _publish(transport, 2)
    transport.ensure_group("t", "g", start="first")
    assert _events(transport.consume("t", "g", "c", block=0)) == ["e0", "e1"]


def test_a_group_at_new_sees_only_later_entries(transport: Transport) -> None:
    """A group created with start="new" is handed only entries published afterwards."""
    _publish(transport, 2)
    transport.ensure_group("t", "g", start="new")
    _publish(transport, 3, start=2)
    assert _events(transport.consume("t", "g", "c", block=0)) == ["e2"]


def test_ensure_group_twice_leaves_the_group_alone(transport: Transport) -> None:
    """Creating an existing group again does not move its position."""
    transport.ensure_group("t", "g", start="first")
    _publish(transport, 2)
    transport.ensure_group("t", "g", start="new")
    assert _events(transport.consume("t", "g", "c", block=0)) == ["e0", "e1"]


def test_every_group_sees_every_entry(transport: Transport) -> None:
    """Two groups on one topic are each handed all entries (broadcast)."""
    transport.ensure_group("t", "node-a")
    transport.ensure_group("t", "node-b")
    _publish(transport, 4)
    assert _events(transport.consume("t", "node-a", "c", block=0)) == ["e0", "e1", "e2", "e3"]
    assert _events(transport.consume("t", "node-b", "c", block=0)) == ["e0", "e1", "e2", "e3"]


def test_consumers_of_one_group_split_the_entries(transport: Transport) -> None:
    """Within a group each entry goes to one consumer only (work queue)."""
    transport.ensure_group("t", "g")
    _publish(transport, 6)
    first = transport.consume("t", "g", "c1", count=4, block=0)
    second = transport.consume("t", "g", "c2", count=4, block=0)
    assert (len(first), len(second)) == (4, 2)
    assert sorted(_events(first + second)) == [f"e{i}" for i in range(6)]


def test_count_limits_a_read(transport: Transport) -> None:
    """consume(count=n) hands out at most n entries; the rest come with the next read."""
    transport.ensure_group("t", "g")
    _publish(transport, 5)
    assert _events(transport.consume("t", "g", "c", count=2, block=0)) == ["e0", "e1"]
    assert _events(transport.consume("t", "g", "c", count=10, block=0)) == ["e2", "e3", "e4"]


def test_reading_a_group_never_created_raises(transport: Transport) -> None:
    """consume() on a missing group raises NoSuchGroupError, a TransportError."""
    transport.publish("t", "e0", b"x")
    with pytest.raises(NoSuchGroupError) as caught:
        transport.consume("t", "nope", "c", block=0)
    assert isinstance(caught.value, TransportError)
    assert "nope" in str(caught.value)


def test_consume_without_block_returns_at_once(transport: Transport) -> None:
    """consume(block=0) on an empty group returns an empty list without waiting."""
    transport.ensure_group("t", "g")
    started = time.monotonic()
    assert transport.consume("t", "g", "c", block=0) == []
    assert time.monotonic() - started < 1.0


def test_consume_waits_for_a_publish(transport: Transport) -> None:
    """A blocked consume() returns the entry another thread publishes while it waits."""
    transport.ensure_group("t", "g")
    timer = threading.Timer(0.2, transport.publish, ("t", "late", b"x"))
    timer.start()
    try:
        started = time.monotonic()
        got = transport.consume("t", "g", "c", block=10)
        waited = time.monotonic() - started
    finally:
        timer.join()
    assert _events(got) == ["late"]
    assert waited < 8


def test_consume_gives_up_after_block(transport: Transport) -> None:
    """A blocked consume() with nothing published returns empty after about ``block``."""
    transport.ensure_group("t", "g")
    started = time.monotonic()
    assert transport.consume("t", "g", "c", block=0.2) == []
    assert time.monotonic() - started >= 0.15


def test_an_unacked_entry_is_not_handed_out_again_by_consume(transport: Transport) -> None:
    """A pending entry stays with its consumer: consume() hands out only new entries."""
    transport.ensure_group("t", "g")
    _publish(transport, 1)
    assert len(transport.consume("t", "g", "c1", block=0)) == 1
    assert transport.consume("t", "g", "c2", block=0) == []


def test_claim_takes_idle_entries_and_counts_a_delivery(transport: Transport) -> None:
    """An entry idle past min_idle is claimed by another consumer with deliveries 2."""
    transport.ensure_group("t", "g")
    ids = _publish(transport, 2)
    transport.consume("t", "g", "dead-worker", block=0)
    time.sleep(0.3)
    claimed = transport.claim("t", "g", "c2", min_idle=0.2)
    assert [(m.id, m.event_id, m.deliveries) for m in claimed] == [
        (ids[0], "e0", 2),
        (ids[1], "e1", 2),
    ]
    consumers = {c.name: c.pending for c in transport.status(["t"])[0].consumers}
    assert consumers == {"dead-worker": 0, "c2": 2}


def test_claim_leaves_entries_not_idle_long_enough(transport: Transport) -> None:
    """Entries handed out less than min_idle ago are not claimed."""
    transport.ensure_group("t", "g")
    _publish(transport, 2)
    transport.consume("t", "g", "c1", block=0)
    assert transport.claim("t", "g", "c2", min_idle=60) == []


def test_claim_respects_count_and_takes_the_oldest(transport: Transport) -> None:
    """claim(count=n) takes at most n entries, oldest first; the next claim takes the rest."""
    transport.ensure_group("t", "g")
    _publish(transport, 5)
    transport.consume("t", "g", "c1", block=0)
    time.sleep(0.15)
    assert _events(transport.claim("t", "g", "c2", min_idle=0.1, count=2)) == ["e0", "e1"]
    assert _events(transport.claim("t", "g", "c2", min_idle=0.1, count=10)) == ["e2", "e3", "e4"]


def test_claim_also_takes_back_the_callers_own_idle_entries(transport: Transport) -> None:
    """A consumer's own entries idle past min_idle are claimed again (deliveries 2)."""
    transport.ensure_group("t", "g")
    _publish(transport, 1)
    transport.consume("t", "g", "c1", block=0)
    time.sleep(0.15)
    assert [m.deliveries for m in transport.claim("t", "g", "c1", min_idle=0.1)] == [2]


def test_ack_ends_pending(transport: Transport) -> None:
    """An acknowledged entry is not claimed again; ack() counts what was pending."""
    transport.ensure_group("t", "g")
    ids = _publish(transport, 3)
    transport.consume("t", "g", "c1", block=0)
    assert transport.ack("t", "g", ids[:2]) == 2
    assert transport.ack("t", "g", ids[:2]) == 0
    time.sleep(0.15)
    assert _events(transport.claim("t", "g", "c2", min_idle=0.1)) == ["e2"]


def test_keep_alive_keeps_a_claim(transport: Transport) -> None:
    """Entries refreshed by keep_alive() are not idle, so no other consumer claims them."""
    transport.ensure_group("t", "g")
    ids = _publish(transport, 2)
    transport.consume("t", "g", "slow", block=0)
    # e0 and e1 idle past min_idle, then e0 is refreshed: a stall of up to a second between the
    # refresh and the claim (a loaded machine) still leaves e0 too fresh to claim.
    time.sleep(1.2)
    assert transport.keep_alive("t", "g", "slow", ids[:1]) == ids[:1]
    claimed = transport.claim("t", "g", "other", min_idle=1.1)
    assert _events(claimed) == ["e1"]


def test_keep_alive_counts_no_delivery(transport: Transport) -> None:
    """keep_alive() resets the idle time without adding a delivery."""
    transport.ensure_group("t", "g")
    ids = _publish(transport, 1)
    transport.consume("t", "g", "c1", block=0)
    transport.keep_alive("t", "g", "c1", ids)
    time.sleep(0.15)
    assert [m.deliveries for m in transport.claim("t", "g", "c2", min_idle=0.1)] == [2]


def test_keep_alive_never_takes_back_a_lost_claim(transport: Transport) -> None:
    """After another consumer claimed an entry, the first one's keep_alive() leaves it there."""
    transport.ensure_group("t", "g")
    ids = _publish(transport, 1)
    transport.consume("t", "g", "c1", block=0)
    time.sleep(0.15)
    transport.claim("t", "g", "c2", min_idle=0.1)
    assert transport.keep_alive("t", "g", "c1", ids) == []
    consumers = {c.name: c.pending for c in transport.status(["t"])[0].consumers}
    assert consumers == {"c1": 0, "c2": 1}


def test_keep_alive_of_acked_entries_returns_nothing(transport: Transport) -> None:
    """keep_alive() on entries already acknowledged holds nothing and does not raise."""
    transport.ensure_group("t", "g")
    ids = _publish(transport, 1)
    transport.consume("t", "g", "c1", block=0)
    transport.ack("t", "g", ids)
    assert transport.keep_alive("t", "g", "c1", ids) == []


def test_keep_alive_on_a_missing_group_raises_even_with_no_ids(transport: Transport) -> None:
    """keep_alive() of a group never created raises NoSuchGroupError, with ids or without."""
    transport.ensure_group("t", "g")
    ids = _publish(transport, 1)
    transport.consume("t", "g", "c1", block=0)
    for topic, group, wanted in (
        ("t", "other", []),
        ("t", "other", ids),
        ("nowhere", "g", []),
        ("t", "other", ["not-an-id"]),
    ):
        with pytest.raises(NoSuchGroupError) as caught:
            transport.keep_alive(topic, group, "c1", wanted)
        assert caught.value.operation == "keep_alive"
    assert transport.keep_alive("t", "g", "c1", []) == []
    assert transport.keep_alive("t", "g", "c1", ids) == ids


def test_mark_done_deduplicates_per_group(transport: Transport) -> None:
    """An event marked done in one group is done there only; marking it twice returns False."""
    assert transport.done("g1", "ev") is False
    assert transport.mark_done("g1", "ev") is True
    assert transport.mark_done("g1", "ev") is False
    assert transport.done("g1", "ev") is True
    assert transport.done("g2", "ev") is False


def test_done_marks_expire_after_the_retention(make_transport: MakeTransport) -> None:
    """A mark is forgotten once dedupe_ttl seconds have passed."""
    transport = make_transport(dedupe_ttl=1.0)
    transport.mark_done("g", "ev")
    assert transport.done("g", "ev") is True
    time.sleep(1.3)
    assert transport.done("g", "ev") is False


def test_dead_letter_keeps_the_entry_and_acks_it(transport: Transport) -> None:
    """A dead-lettered entry is stored with its reason and deliveries, and leaves pending."""
    transport.ensure_group("t", "g")
    ids = _publish(transport, 2)
    message = transport.consume("t", "g", "c", count=1, block=0)[0]
    dead_id = transport.dead_letter("t", "g", message, "boom: ValueError")
    [dead] = transport.dead_letters("t", "g")
    assert (dead.id, dead.topic, dead.group, dead.message_id) == (dead_id, "t", "g", ids[0])
    assert (dead.event_id, dead.body, dead.deliveries, dead.reason) == (
        "e0",
        b"body 0",
        1,
        "boom: ValueError",
    )
    assert abs(dead.dead_at - time.time()) < 60
    status = transport.status(["t"])[0]
    assert (status.pending, status.dead) == (0, 1)


def test_dead_letter_on_a_missing_group_raises_and_stores_nothing(transport: Transport) -> None:
    """dead_letter() of a group never created (or lost) raises NoSuchGroupError, writing nothing."""
    transport.ensure_group("t", "g")
    _publish(transport, 1)
    message = transport.consume("t", "g", "c", block=0)[0]
    for topic, group in (("t", "other"), ("nowhere", "g")):
        with pytest.raises(NoSuchGroupError) as caught:
            transport.dead_letter(topic, group, message, "failed")
        assert caught.value.operation == "dead_letter"
        assert transport.dead_letters(topic, group) == []
    status = transport.status(["t"])[0]
    assert (status.group, status.pending, status.dead) == ("g", 1, 0)


def test_dead_letters_are_per_group(transport: Transport) -> None:
    """A dead letter of one group is not in another group's dead letters."""
    transport.ensure_group("t", "g1")
    transport.ensure_group("t", "g2")
    _publish(transport, 1)
    transport.dead_letter("t", "g1", transport.consume("t", "g1", "c", block=0)[0], "x")
    assert transport.dead_letters("t", "g2") == []
    assert len(transport.dead_letters("t", "g1")) == 1


def test_retry_puts_dead_letters_back_as_new_entries(transport: Transport) -> None:
    """retry() publishes dead letters again: the group is handed them with deliveries 1."""
    transport.ensure_group("t", "g")
    _publish(transport, 2)
    for message in transport.consume("t", "g", "c", block=0):
        transport.dead_letter("t", "g", message, "failed")
    assert transport.retry("t", "g") == 2
    assert transport.dead_letters("t", "g") == []
    again = transport.consume("t", "g", "c", block=0)
    assert [(m.event_id, m.body, m.deliveries) for m in again] == [
        ("e0", b"body 0", 1),
        ("e1", b"body 1", 1),
    ]


def test_retry_of_chosen_ids_leaves_the_others(transport: Transport) -> None:
    """retry(ids=...) republishes only those dead letters."""
    transport.ensure_group("t", "g")
    _publish(transport, 3)
    for message in transport.consume("t", "g", "c", block=0):
        transport.dead_letter("t", "g", message, "failed")
    dead = transport.dead_letters("t", "g")
    assert transport.retry("t", "g", [dead[1].id, "0-1"]) == 1
    assert [d.event_id for d in transport.dead_letters("t", "g")] == ["e0", "e2"]
    assert _events(transport.consume("t", "g", "c", block=0)) == ["e1"]


def test_dead_letters_count_limits(transport: Transport) -> None:
    """dead_letters(count=n) returns the n oldest."""
    transport.ensure_group("t", "g")
    _publish(transport, 3)
    for message in transport.consume("t", "g", "c", block=0):
        transport.dead_letter("t", "g", message, "failed")
    assert [d.event_id for d in transport.dead_letters("t", "g", count=2)] == ["e0", "e1"]


def test_status_reports_length_pending_lag_consumers_dead(transport: Transport) -> None:
    """status() gives per topic and group: length, pending, lag, consumers and dead letters."""
    transport.ensure_group("t", "a")
    transport.ensure_group("t", "b")
    ids = _publish(transport, 5)
    transport.consume("t", "a", "c1", count=3, block=0)
    transport.ack("t", "a", ids[:1])
    transport.dead_letter("t", "a", transport.consume("t", "a", "c2", count=1, block=0)[0], "x")
    a, b = transport.status(["t"])
    assert (a.topic, a.group, a.length, a.pending, a.lag, a.dead) == ("t", "a", 5, 2, 1, 1)
    assert {(c.name, c.pending) for c in a.consumers} == {("c1", 2), ("c2", 0)}
    assert all(0 <= c.idle < 60 for c in a.consumers)
    assert (b.group, b.length, b.pending, b.lag, b.consumers, b.dead) == ("b", 5, 0, 5, (), 0)


def test_status_of_all_topics_lists_every_group(transport: Transport) -> None:
    """status() without topics covers every topic that has a group."""
    transport.ensure_group("t1", "g")
    transport.ensure_group("t2", "g")
    transport.ensure_group("t2", "h")
    found = {(s.topic, s.group) for s in transport.status()}
    assert found == {("t1", "g"), ("t2", "g"), ("t2", "h")}


def test_maxlen_trims_old_entries_approximately(make_transport: MakeTransport) -> None:
    """A topic keeps about maxlen entries: at least maxlen, at most a trim step over."""
    transport = make_transport(maxlen=50)
    transport.ensure_group("t", "g")
    _publish(transport, 400)
    length = transport.status(["t"])[0].length
    assert 50 <= length <= 250
    got = transport.consume("t", "g", "c", count=1000, block=0)
    assert len(got) == length
    assert got[-1].event_id == "e399"
    assert got[0].event_id != "e0"


def test_maxlen_exact_trims_to_maxlen(make_transport: MakeTransport) -> None:
    """With approximate=False a topic keeps exactly its maxlen newest entries."""
    transport = make_transport(maxlen=10, approximate=False)
    transport.ensure_group("t", "g")
    _publish(transport, 30)
    assert _events(transport.consume("t", "g", "c", count=100, block=0)) == [
        f"e{i}" for i in range(20, 30)
    ]


def test_a_lagging_group_misses_trimmed_entries(make_transport: MakeTransport) -> None:
    """Entries trimmed before a group read them are gone for it; it reads the kept ones."""
    transport = make_transport(maxlen=5, approximate=False)
    transport.ensure_group("t", "slow")
    _publish(transport, 8)
    assert _events(transport.consume("t", "slow", "c", count=100, block=0)) == [
        f"e{i}" for i in range(3, 8)
    ]


def test_claim_drops_pending_entries_that_were_trimmed(make_transport: MakeTransport) -> None:
    """A pending entry trimmed from the topic is not claimed and leaves the pending list."""
    transport = make_transport(maxlen=2, approximate=False)
    transport.ensure_group("t", "g")
    _publish(transport, 2)
    transport.consume("t", "g", "c1", block=0)
    _publish(transport, 4, start=2)
    time.sleep(0.15)
    assert transport.claim("t", "g", "c2", min_idle=0.1) == []
    assert transport.status(["t"])[0].pending == 0


@pytest.mark.parametrize("name", ["", "a b", "tab\there"], ids=["empty", "space", "tab"])
def test_bad_names_are_refused(transport: Transport, name: str) -> None:
    """An empty name or one with whitespace raises TidingsValueError naming the value."""
    with pytest.raises(TidingsValueError, match="topic"):
        transport.publish(name, "e", b"x")
    with pytest.raises(TidingsValueError, match="group"):
        transport.ensure_group("t", name)


def test_a_body_that_is_not_bytes_is_refused(transport: Transport) -> None:
    """publish() of a str body raises TidingsTypeError naming the type."""
    with pytest.raises(TidingsTypeError, match="str"):
        transport.publish("t", "e", "text")  # type: ignore[arg-type]


@pytest.mark.parametrize("count", [0, -1, 1.5], ids=["zero", "negative", "float"])
def test_a_bad_count_is_refused(transport: Transport, count: int) -> None:
    """consume(count=...) below 1 or not an int raises TidingsValueError naming it."""
    transport.ensure_group("t", "g")
    with pytest.raises(TidingsValueError, match="count"):
        transport.consume("t", "g", "c", count=count, block=0)


def test_start_must_be_first_or_new(transport: Transport) -> None:
    """ensure_group(start=...) other than "first"/"new" raises TidingsValueError."""
    with pytest.raises(TidingsValueError, match="start"):
        transport.ensure_group("t", "g", start="last")  # type: ignore[arg-type]


def test_threads_consuming_one_group_split_all_entries(transport: Transport) -> None:
    """Four threads consuming while another publishes get disjoint sets covering all."""
    transport.ensure_group("t", "g")
    total = 400
    seen: list[list[str]] = [[] for _ in range(4)]
    barrier = threading.Barrier(5)
    stop = threading.Event()

    def work(n: int) -> None:
        barrier.wait()
        while not stop.is_set():
            messages = transport.consume("t", "g", f"c{n}", count=7, block=0.05)
            seen[n].extend(_events(messages))
            transport.ack("t", "g", [m.id for m in messages])

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    barrier.wait()
    _publish(transport, total)
    deadline = time.monotonic() + 30
    while sum(map(len, seen)) < total and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    for thread in threads:
        thread.join(10)
    everything = [e for part in seen for e in part]
    assert len(everything) == total
    assert set(everything) == {f"e{i}" for i in range(total)}


def test_done_events_returns_the_done_subset(transport: Transport) -> None:
    """done_events() tells which of several events are marked done in the group."""
    transport.mark_done("g", "e1")
    transport.mark_done("g", "e3")
    transport.mark_done("other", "e2")
    assert transport.done_events("g", ["e1", "e2", "e3", "e1"]) == {"e1", "e3"}
    assert transport.done_events("g", []) == set()


def test_complete_marks_and_acks_together(transport: Transport) -> None:
    """complete() marks each event done and acknowledges the entries; returns the ack count."""
    transport.ensure_group("t", "g")
    _publish(transport, 3)
    messages = transport.consume("t", "g", "c", block=0)
    assert transport.complete("t", "g", messages[:2]) == 2
    assert transport.done_events("g", ["e0", "e1", "e2"]) == {"e0", "e1"}
    assert transport.status(["t"])[0].pending == 1
    assert transport.complete("t", "g", messages[:2]) == 0
    assert transport.complete("t", "g", []) == 0


def test_remove_group_deletes_it_and_leaves_the_others(transport: Transport) -> None:
    """remove_group() drops a group with its pending entries and dead letters, once."""
    transport.ensure_group("t", "node-a")
    transport.ensure_group("t", "node-b")
    _publish(transport, 3)
    [first, *_] = transport.consume("t", "node-a", "c", block=0)
    transport.dead_letter("t", "node-a", first, "x")
    assert transport.remove_group("t", "node-a") is True
    assert [s.group for s in transport.status(["t"])] == ["node-b"]
    assert transport.dead_letters("t", "node-a") == []
    with pytest.raises(NoSuchGroupError):
        transport.consume("t", "node-a", "c", block=0)
    assert transport.remove_group("t", "node-a") is False
    assert transport.remove_group("nowhere", "node-a") is False
    assert _events(transport.consume("t", "node-b", "c", block=0)) == ["e0", "e1", "e2"]


def test_a_removed_group_made_again_starts_afresh(transport: Transport) -> None:
    """After remove_group(), ensure_group() makes a new group at its start."""
    transport.ensure_group("t", "g")
    _publish(transport, 2)
    transport.consume("t", "g", "c", block=0)
    transport.remove_group("t", "g")
    transport.ensure_group("t", "g", start="first")
    assert _events(transport.consume("t", "g", "c", block=0)) == ["e0", "e1"]
