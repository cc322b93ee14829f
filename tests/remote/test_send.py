"""Queue and broadcast sends end to end in one process: outbox row, relay publish, consumer."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tidings import Signal
from tidings._errors import DeliveryOptionsError, OutboxNotInstalledError, TransportError
from tidings.outbox import Event, Outbox, Relay
from tidings.outbox._remote import topic_name
from tidings.transport import InMemoryTransport

placed = Signal(name="shop.order_placed")
calls: list[tuple[str, Any, Event]] = []


class Base(DeclarativeBase):
    """The models of these tests."""


class Order(Base):
    """An order."""

    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)


def send_receipt(sender: Any, order: Order, event: Event, **kwargs: Any) -> None:
    """A queue receiver: note the order it was given."""
    calls.append(("receipt", order.id, event))


def drop_cache(sender: Any, order: Order, event: Event, **kwargs: Any) -> None:
    """A broadcast receiver: note the order it was given."""
    calls.append(("cache", order.id, event))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine on a new SQLite file with the orders table."""
    engine = create_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def box(engine: Engine) -> Iterator[Outbox]:
    """An installed outbox on the in-memory transport, receivers connected."""
    outbox = Outbox(engine, transport="memory://", node="web-1")
    outbox.create_all()
    calls.clear()
    placed.connect(send_receipt, delivery="queue", max_attempts=3)
    placed.connect(drop_cache, delivery="broadcast")
    with outbox.installed():
        yield outbox
    placed.disconnect(send_receipt)
    placed.disconnect(drop_cache)


def place(engine: Engine, ids: Sequence[int], *, rollback: bool = False) -> None:
    """Insert orders in one session transaction, sending ``placed`` for each."""
    with Session(engine) as session, session.begin():
        for n in ids:
            order = Order(id=n)
            session.add(order)
            session.flush()
            placed.send(Order, order=order)
        if rollback:
            session.rollback()


def test_a_committed_send_reaches_the_queue_and_every_broadcast_node(
    box: Outbox, engine: Engine
) -> None:
    """Rows are published by the relay, then run once by the queue and once by the node."""
    place(engine, [1, 2])
    assert box.status().pending == 4
    consumer = box.consumer(block=0.01)
    consumer.ensure_groups()
    Relay(box).run(once=True)
    assert box.status().pending == 0
    consumer.run(once=True)
    assert sorted((who, n) for who, n, _ in calls) == [
        ("cache", 1),
        ("cache", 2),
        ("receipt", 1),
        ("receipt", 2),
    ]
    assert {event.attempt for _, _, event in calls} == {1}
    assert box.transport is not None
    groups = sorted(s.group for s in box.transport.status() if s.group.startswith(__name__))
    assert groups == [
        "tests.remote.test_send.drop_cache@web-1",
        "tests.remote.test_send.send_receipt",
    ]


def test_a_rolled_back_send_publishes_nothing(box: Outbox, engine: Engine) -> None:
    """A send in a transaction that rolls back leaves no row and no entry."""
    place(engine, [1], rollback=True)
    Relay(box).run(once=True)
    assert box.status().pending == 0
    assert box.transport is not None
    assert box.transport.status() == []


def test_the_entry_carries_the_event_id_of_the_row(box: Outbox, engine: Engine) -> None:
    """The stream entry's event id is the one the receiver sees as ``event.id``."""
    place(engine, [7])
    consumer = box.consumer(block=0.01)
    consumer.ensure_groups()
    Relay(box).run(once=True)
    assert box.transport is not None
    topic = topic_name("tests.remote.test_send.send_receipt")
    box.transport.ensure_group(topic, "probe", start="first")
    (entry,) = box.transport.consume(topic, "probe", "probe", block=0)
    consumer.run(once=True)
    assert [str(event.id) for who, _, event in calls if who == "receipt"] == [entry.event_id]


class Refusing(InMemoryTransport):
    """An in-memory transport whose publish fails while ``down`` is set."""

    down = True
    tries = 0

    def publish(self, topic: str, event_id: str, body: bytes) -> str:
        self.tries += 1
        if self.down:
            raise TransportError("the broker is down", operation="publish", target="memory")
        return super().publish(topic, event_id, body)


def test_a_transport_error_keeps_the_rows_without_counting_an_attempt(engine: Engine) -> None:
    """A failed publish postpones the batch's rows (attempts 0); they go out once it is back."""
    carrier = Refusing()
    outbox = Outbox(engine, transport=carrier)
    outbox.create_all()
    placed.connect(send_receipt, delivery="queue")
    try:
        with outbox.installed():
            place(engine, [1, 2, 3])
        relay = Relay(outbox)
        relay.run(once=True)
        assert carrier.tries == 1
        assert relay.stats.postponed == 3
        assert relay.stats.dead == 0
        with engine.connect() as conn:
            rows = conn.execute(outbox.tables.pending.select()).mappings().all()
        assert [(row["attempts"], row["locked_by"]) for row in rows] == [(0, None)] * 3
        carrier.down = False
        with engine.begin() as conn:
            conn.execute(outbox.tables.pending.update().values(available_at=rows[0]["sent_at"]))
        again = Relay(outbox)
        again.run(once=True)
        assert again.stats.done == 3
        topic = topic_name("tests.remote.test_send.send_receipt")
        carrier.ensure_group(topic, "probe", start="first")
        assert len(carrier.consume(topic, "probe", "probe", block=0)) == 3
    finally:
        placed.disconnect(send_receipt)


def test_a_send_without_a_transport_raises_and_stores_nothing(engine: Engine) -> None:
    """A queue send while the installed outbox has no transport names the receiver and fails."""
    outbox = Outbox(engine)
    outbox.create_all()
    placed.connect(send_receipt, delivery="queue")
    try:
        with outbox.installed(), pytest.raises(OutboxNotInstalledError, match="no transport"):
            place(engine, [1])
        assert outbox.status().pending == 0
    finally:
        placed.disconnect(send_receipt)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 0


@pytest.mark.parametrize("option", ["backoff", "backoff_max", "ordered"])
def test_backoff_and_order_options_are_refused_for_queue_receivers(option: str) -> None:
    """``backoff`` and ``ordered`` do not apply to queue delivery: connect refuses them."""
    options: dict[str, Any] = {option: 1.0 if option != "ordered" else True}
    with pytest.raises(DeliveryOptionsError, match=f"{option} do(es)? not apply"):
        placed.connect(send_receipt, delivery="queue", **options)
    assert not placed.has_connections()


def test_a_transport_url_of_no_known_kind_is_refused(engine: Engine) -> None:
    """``Outbox(transport="amqp://...")`` says which URLs it takes."""
    with pytest.raises(ValueError, match=r"'amqp://x'.*redis://"):
        Outbox(engine, transport="amqp://x")


@pytest.mark.parametrize("name", ["send receipt", "mail@node"])
def test_a_receiver_name_unfit_for_a_topic_is_refused(name: str) -> None:
    """A queue receiver's ``name=`` names its topic and group: no spaces, no ``@``."""
    with pytest.raises(ValueError, match="cannot hold spaces or '@'"):
        placed.connect(send_receipt, delivery="queue", name=name)
    assert not placed.has_connections()
