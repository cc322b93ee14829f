"""``delivery="durable"``: connect-time checks, the row written where the transaction is."""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Engine,
    ForeignKey,
    MetaData,
    Table,
    create_engine,
    func,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

import tidings
import tidings.http as th
import tidings.models as tm
from tests.outbox import shop
from tidings import Delivery, DeliveryOptionsError, Signal, TidingsValueError
from tidings._delivery import handler_for, register_handler
from tidings.outbox import (
    Claimed,
    NoStableNameError,
    Outbox,
    OutboxHandler,
    OutboxNotInstalledError,
    PayloadTypeError,
    Relay,
    writing_on,
)
from tidings.outbox._receivers import registered
from tidings.sqlalchemy import instrument, save


@pytest.fixture
def box(outbox: Outbox, engine: Engine) -> Iterator[Outbox]:
    """The module's outbox, installed, with the shop's tables; the receivers disconnected after."""
    shop.Base.metadata.create_all(engine)
    try:
        with outbox.installed():
            yield outbox
    finally:
        for signal in (shop.order_placed, tm.pre_save, tm.post_save, tm.pre_delete, tm.post_delete):
            signal.receivers = []
        shop.CALLS.clear()
        shop.Base.metadata.drop_all(engine)


def rows(box: Outbox) -> list[Any]:
    """The pending deliveries, oldest first."""
    table = box.tables.pending
    with box.engine.connect() as conn:
        return list(conn.execute(select(table).order_by(table.c.id)))


def pending(box: Outbox) -> int:
    """How many deliveries are pending."""
    with box.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(box.tables.pending)).scalar_one()


# -- connecting -------------------------------------------------------------------------------


def test_a_durable_send_stores_a_row_and_the_relay_runs_the_receiver(box: Outbox) -> None:
    """send() answers Delivery.DURABLE, stores one row, and a relay calls the receiver once."""
    shop.order_placed.connect(shop.send_receipt, delivery="durable")
    responses = shop.order_placed.send(None, order_id=7, total=datetime.date(2026, 12, 1))
    assert responses == [(shop.send_receipt, Delivery.DURABLE)]
    [row] = rows(box)
    assert (row.signal, row.receiver, row.delivery) == (
        "shop.order_placed",
        "tests.outbox.shop.send_receipt",
        "durable",
    )
    assert shop.CALLS == []
    Relay(box).run(once=True)
    [(name, call)] = shop.CALLS
    event = call.pop("event")
    assert (name, call) == (
        "send_receipt",
        {
            "signal": shop.order_placed,
            "sender": None,
            "order_id": 7,
            "total": datetime.date(2026, 12, 1),
        },
    )
    assert (event.id, event.attempt) == (row.event_id, 1)
    assert pending(box) == 0


def test_each_durable_receiver_of_a_send_gets_its_own_row(box: Outbox) -> None:
    """Two durable receivers: two rows, each with its own event id."""
    shop.order_placed.connect(shop.send_receipt, delivery="durable")
    shop.order_placed.connect(shop.index_order, delivery="durable", name="shop.index")
    shop.order_placed.send(None, order_id=1)
    stored = rows(box)
    assert [row.receiver for row in stored] == ["tests.outbox.shop.send_receipt", "shop.index"]
    assert len({row.event_id for row in stored}) == 2


def test_options_are_stored_with_the_receiver_for_the_workers(box: Outbox) -> None:
    """max_attempts, backoff and backoff_max given at connect are the worker's retry policy."""
    shop.order_placed.connect(
        shop.send_receipt, delivery="durable", max_attempts=2, backoff=0.5, backoff_max=4
    )
    spec = registered()[("shop.order_placed", "tests.outbox.shop.send_receipt")]
    assert (spec.max_attempts, spec.backoff, spec.backoff_max, spec.func) == (
        2,
        0.5,
        4,
        shop.send_receipt,
    )


def test_options_not_given_are_the_documented_defaults(box: Outbox) -> None:
    """Without options: 5 attempts, 1 s backoff doubling up to 300 s, no timeout, unordered."""
    shop.order_placed.connect(shop.send_receipt, delivery="durable")
    spec = registered()[("shop.order_placed", "tests.outbox.shop.send_receipt")]
    assert (spec.max_attempts, spec.backoff, spec.backoff_max, spec.timeout) == (
        5,
        1.0,
        300.0,
        None,
    )
    assert not spec.ordered


def _nested() -> Any:
    def inner(**kwargs: Any) -> None:
        """Defined inside a function."""

    return inner


@pytest.mark.parametrize(
    "receiver",
    [
        pytest.param(lambda **kwargs: None, id="lambda"),
        pytest.param(_nested(), id="nested"),
        pytest.param(shop.Mailer().on_instance, id="bound-method"),
        pytest.param(functools.partial(shop.send_receipt), id="partial"),
    ],
)
def test_a_receiver_without_a_stable_name_is_refused_at_connect(box: Outbox, receiver: Any) -> None:
    """Lambdas, nested functions, bound methods, partials: NoStableNameError says what to do."""
    with pytest.raises(NoStableNameError, match=r"no stable name.*module level.*name='app"):
        shop.order_placed.connect(receiver, delivery="durable", weak=False)
    assert not shop.order_placed.has_connections()


def test_name_gives_a_lambda_a_stable_name(box: Outbox) -> None:
    """``name=`` is the wire identity, whatever the receiver is."""
    shop.order_placed.connect(lambda **kwargs: None, delivery="durable", name="shop.l", weak=False)
    shop.order_placed.send(None)
    assert [row.receiver for row in rows(box)] == ["shop.l"]


def test_a_classmethod_has_a_stable_name(box: Outbox) -> None:
    """A method bound to its class is found by ``module.Class.method``."""
    shop.order_placed.connect(shop.Mailer.on_class, delivery="durable")
    shop.order_placed.send(None, n=1)
    assert [row.receiver for row in rows(box)] == ["tests.outbox.shop.Mailer.on_class"]


def test_an_unnamed_signal_is_refused_at_connect(box: Outbox) -> None:
    """A signal without ``name=`` cannot take durable receivers."""
    with pytest.raises(NoStableNameError, match=r"signal has no name.*Signal\(name='app.event'\)"):
        shop.unnamed.connect(shop.send_receipt, delivery="durable")
    assert not shop.unnamed.has_connections()


@pytest.mark.parametrize(
    ("signal", "argument"),
    [
        (tm.post_bulk_update, "'statement'"),
        (tm.post_bulk_delete, "'statement'"),
        (th.request_started, "'environ' (WSGI) or 'scope' (ASGI)"),
        (th.got_request_exception, "'request'"),
    ],
    ids=lambda value: getattr(value, "name", None) or "argument",
)
@pytest.mark.parametrize("delivery", ["durable", "queue"])
def test_a_signal_whose_sends_cannot_be_stored_is_refused_at_connect(
    box: Outbox, signal: Signal, argument: str, delivery: str
) -> None:
    """tidings' bulk and request signals always carry an unstorable argument: connect() refuses."""
    for sender in (None, shop.Customer):
        with pytest.raises(PayloadTypeError) as caught:
            signal.connect(shop.send_receipt, sender=sender, delivery=delivery)
        message = str(caught.value)
        assert repr(signal) in message
        assert "tests.outbox.shop.send_receipt" in message
        assert f"carries {argument}" in message
        assert "delivery='on_commit'" in message
        assert not signal.has_connections()
    assert [key for key in registered() if key[0] == signal.name] == []


def test_a_bulk_statement_reaches_an_on_commit_receiver_instead(box: Outbox) -> None:
    """The remedy the refusal names works: an on_commit receiver of post_bulk_update runs."""
    seen: list[Any] = []

    def on_bulk(sender: Any, pks: Any, **kwargs: Any) -> None:
        seen.append((sender, pks))

    tm.post_bulk_update.connect(on_bulk, sender=shop.Customer, delivery="on_commit")
    try:
        with Session(box.engine) as session, session.begin():
            session.add(shop.Customer(id=3, email="c@example.com"))
            session.flush()
            session.execute(update(shop.Customer).values(email="d@example.com"))
            assert seen == []
        assert seen == [(shop.Customer, (3,))]
    finally:
        tm.post_bulk_update.disconnect(on_bulk, sender=shop.Customer)
    assert pending(box) == 0


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"retries": 3}, DeliveryOptionsError, "unknown option.*retries.*max_attempts"),
        ({"max_attempts": 0}, TidingsValueError, "max_attempts must be an int of at least 1"),
        ({"max_attempts": "3"}, TidingsValueError, "max_attempts"),
        ({"backoff": 5, "backoff_max": 1}, TidingsValueError, "backoff <= backoff_max"),
        ({"backoff": -1}, TidingsValueError, "0 <= backoff"),
        ({"backoff_max": 1e300}, TidingsValueError, "backoff_max <= 31622400 \\(a year\\)"),
        ({"backoff_max": float("inf")}, TidingsValueError, "backoff_max=inf"),
        ({"timeout": 3}, TidingsValueError, "timeout= applies to async receivers only"),
        ({"name": ""}, TidingsValueError, "name= must be a non-empty string"),
    ],
)
def test_bad_options_are_refused_at_connect(
    box: Outbox, options: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Each wrong option fails connect() with a message naming the receiver and the signal."""
    with pytest.raises(error, match=match) as caught:
        shop.order_placed.connect(shop.send_receipt, delivery="durable", **options)
    assert "tests.outbox.shop.send_receipt" in str(caught.value)
    assert "shop.order_placed" in str(caught.value)
    assert not shop.order_placed.has_connections()


def test_an_async_receivers_timeout_must_be_positive(box: Outbox) -> None:
    """timeout= on an async receiver is a positive number of seconds."""
    with pytest.raises(TidingsValueError, match="timeout must be a positive number"):
        shop.order_placed.connect(shop.notify, delivery="durable", timeout=0)
    shop.order_placed.connect(shop.notify, delivery="durable", timeout=2.5)
    assert registered()[("shop.order_placed", "tests.outbox.shop.notify")].timeout == 2.5


def test_two_receivers_under_one_name_are_refused(box: Outbox) -> None:
    """A second receiver named like the first on the same signal fails at connect."""
    shop.order_placed.connect(shop.send_receipt, delivery="durable", name="shop.mail")
    with pytest.raises(TidingsValueError, match=r"named 'shop\.mail'"):
        shop.order_placed.connect(shop.index_order, delivery="durable", name="shop.mail")


# -- where the row is written -----------------------------------------------------------------


def test_without_an_installed_outbox_the_send_fails(outbox: Outbox) -> None:
    """A durable send with no outbox installed raises, naming the signal and the receiver."""
    shop.order_placed.connect(shop.send_receipt, delivery="durable")
    try:
        with pytest.raises(OutboxNotInstalledError, match=r"shop.order_placed.*send_receipt"):
            shop.order_placed.send(None)
    finally:
        shop.order_placed.receivers = []


def test_with_no_transaction_open_the_row_commits_at_once(box: Outbox) -> None:
    """Outside any transaction the send commits its row in a short transaction of its own."""
    shop.order_placed.connect(shop.send_receipt, delivery="durable")
    shop.order_placed.send(None, order_id=3)
    assert pending(box) == 1


def test_a_send_in_a_session_writes_in_its_transaction(box: Outbox) -> None:
    """Inside a Session's transaction the row exists exactly when the transaction commits."""
    shop.order_placed.connect(shop.send_receipt, delivery="durable")
    with Session(box.engine) as session:
        with session.begin():
            session.add(shop.Customer(id=1, email="a@example.com"))
            shop.order_placed.send(None, order_id=1)
            assert session.scalar(select(func.count()).select_from(box.tables.pending)) == 1
        assert pending(box) == 1
        with session.begin():
            shop.order_placed.send(None, order_id=2)
            session.rollback()
    assert [row.payload for row in rows(box)] == ['{"sender":null,"order_id":1}']


def test_a_rolled_back_savepoint_drops_only_its_rows(box: Outbox) -> None:
    """Rows of a rolled-back savepoint vanish; those of the enclosing transaction stay."""
    shop.order_placed.connect(shop.send_receipt, delivery="durable")
    with Session(box.engine) as session, session.begin():
        shop.order_placed.send(None, order_id=1)
        savepoint = session.begin_nested()
        shop.order_placed.send(None, order_id=2)
        savepoint.rollback()
        with session.begin_nested():
            shop.order_placed.send(None, order_id=3)
    assert [row.payload for row in rows(box)] == [
        '{"sender":null,"order_id":1}',
        '{"sender":null,"order_id":3}',
    ]


def test_a_model_signal_writes_in_the_flush_and_the_worker_loads_the_instance(
    box: Outbox,
) -> None:
    """post_save with a durable receiver: the row commits with the customer; the worker gets a
    freshly loaded instance, ``created`` and ``update_fields``."""
    tm.post_save.connect(shop.welcome, sender=shop.Customer, delivery="durable")
    with Session(box.engine) as session:
        with session.begin():
            session.add(shop.Customer(id=5, email="e@example.com"))
        with session.begin():
            session.add(shop.Customer(id=6, email="f@example.com"))
            session.flush()
            session.rollback()
    [row] = rows(box)
    assert row.signal == "post_save"
    Relay(box).run(once=True)
    [(_, call)] = shop.CALLS
    instance = call["instance"]
    assert (type(instance), instance.id, instance.email) == (shop.Customer, 5, "e@example.com")
    assert (call["sender"], call["created"], call["update_fields"]) == (shop.Customer, True, None)


def test_an_update_passes_changes_and_update_fields_through_to_the_worker(box: Outbox) -> None:
    """post_save of an update: the worker gets ``changes`` as (old, new) and ``update_fields``."""
    tm.post_save.connect(shop.welcome, sender=shop.Customer, delivery="durable")
    with Session(box.engine) as session:
        with session.begin():
            session.add(shop.Customer(id=11, email="old@example.com"))
        with session.begin():
            customer = session.get(shop.Customer, 11)
            assert customer is not None
            customer.email = "new@example.com"
            save(session, customer, update_fields=["email"])
    Relay(box).run(once=True)
    [created, updated] = [call for _, call in shop.CALLS]
    assert (created["created"], created["changes"], created["update_fields"]) == (True, {}, None)
    assert updated["created"] is False
    assert updated["changes"] == {"email": ("old@example.com", "new@example.com")}
    assert updated["update_fields"] == frozenset({"email"})
    assert type(updated["update_fields"]) is frozenset
    assert updated["instance"].email == "new@example.com"


class _LinkBase(DeclarativeBase):
    """Models of the many-to-many durability test, kept out of the shop's tables."""


_post_tags = Table(
    "durable_post_tags",
    _LinkBase.metadata,
    Column("post_id", ForeignKey("durable_posts.id"), primary_key=True),
    Column("tag_id", ForeignKey("durable_tags.id"), primary_key=True),
)


class LinkTag(_LinkBase):
    """A tag."""

    __tablename__ = "durable_tags"
    __app_label__ = "linking"
    id: Mapped[int] = mapped_column(primary_key=True)


class LinkPost(_LinkBase):
    """A post whose tags are linked through a plain association Table."""

    __tablename__ = "durable_posts"
    __app_label__ = "linking"
    id: Mapped[int] = mapped_column(primary_key=True)
    tags: Mapped[list[LinkTag]] = relationship(secondary=_post_tags)


instrument(_LinkBase)


def test_m2m_changed_through_a_plain_table_reaches_a_durable_receiver(box: Outbox) -> None:
    """m2m_changed's sender is then the Table: stored by its name, the worker gets the same
    Table object, the reloaded instance, the related class and the keys."""
    _LinkBase.metadata.create_all(box.engine)
    tm.m2m_changed.connect(shop.send_receipt, sender=_post_tags, delivery="durable")
    try:
        with Session(box.engine) as session:
            session.add_all([LinkPost(id=1), LinkTag(id=2)])
            session.commit()
            post = session.get_one(LinkPost, 1)
            post.tags.append(session.get_one(LinkTag, 2))
            session.commit()
        Relay(box).run(once=True)
        got = [
            (
                c["action"],
                c["sender"],
                type(c["instance"]),
                c["instance"].id,
                c["model"],
                c["pk_set"],
            )
            for _, c in shop.CALLS
        ]
        assert got == [
            ("pre_add", _post_tags, LinkPost, 1, LinkTag, {2}),
            ("post_add", _post_tags, LinkPost, 1, LinkTag, {2}),
        ]
        assert pending(box) == 0
    finally:
        tm.m2m_changed.receivers = []
        _LinkBase.metadata.drop_all(box.engine)


def test_a_table_outside_the_instrumented_models_is_refused_at_send(box: Outbox) -> None:
    """A Table no instrumented registry's MetaData holds could not be found by the worker."""
    shop.order_placed.connect(shop.send_receipt, delivery="durable")
    loose = Table("loose_table", MetaData(), Column("id", ForeignKey("durable_posts.id")))
    with pytest.raises(PayloadTypeError, match=r"argument 'table'.*only table of that name"):
        shop.order_placed.send(None, table=loose)
    assert pending(box) == 0


def test_receiver_decorator_connects_a_durable_receiver(box: Outbox) -> None:
    """``@receiver(signal, delivery="durable", ...)`` connects exactly as connect() does."""

    @tidings.receiver(shop.order_placed, delivery="durable", name="shop.decorated", max_attempts=2)
    def decorated(**kwargs: Any) -> None:
        shop.CALLS.append(("decorated", kwargs))

    spec = registered()[("shop.order_placed", "shop.decorated")]
    assert spec.max_attempts == 2
    assert shop.order_placed.send(None, order_id=4) == [(decorated, Delivery.DURABLE)]
    Relay(box).run(once=True)
    [(name, call)] = shop.CALLS
    assert (name, call["order_id"], call["event"].receiver) == ("decorated", 4, "shop.decorated")


def test_a_model_signal_writes_in_the_transaction_of_the_session_that_flushes_it(
    box: Outbox,
) -> None:
    """A Session flushed while another one flushes (from a receiver of the first one's
    ``pre_save``): the post_save row of the inner flush is written in the inner Session's
    transaction, which commits, not the outer one's, which rolls back. Both are flushing,
    neither is "the current" Session: the instance says which one it belongs to."""
    tm.post_save.connect(shop.welcome, sender=shop.Customer, delivery="durable")

    def meanwhile(instance: shop.Customer, **kwargs: Any) -> None:
        if instance.id != 1:
            return
        with Session(box.engine) as inner, inner.begin():
            inner.add(shop.Customer(id=2, email="inner@example.com"))
            inner.flush()

    tm.pre_save.connect(meanwhile, sender=shop.Customer)
    try:
        with Session(box.engine) as outer, outer.begin():
            outer.add(shop.Customer(id=1, email="outer@example.com"))
            outer.flush()
            outer.rollback()
    finally:
        tm.pre_save.disconnect(meanwhile, sender=shop.Customer)
    assert [row.order_key for row in rows(box)] == [None]
    Relay(box).run(once=True)
    assert [call["instance"].id for _, call in shop.CALLS] == [2]


def test_a_deleted_instance_arrives_rebuilt_from_its_snapshot(box: Outbox) -> None:
    """post_delete with a durable receiver: a detached copy of the row as it was."""
    tm.post_delete.connect(shop.welcome, sender=shop.Customer, delivery="durable")
    with Session(box.engine) as session:
        with session.begin():
            session.add(shop.Customer(id=8, email="g@example.com"))
        with session.begin():
            session.delete(session.get(shop.Customer, 8))
    Relay(box).run(once=True)
    [(_, call)] = shop.CALLS
    assert (call["instance"].id, call["instance"].email) == (8, "g@example.com")


def test_pre_save_of_a_new_instance_stores_the_primary_key_it_was_given(box: Outbox) -> None:
    """A durable pre_save receiver of a created instance: one given its primary key is stored
    by it (the worker loads the committed row); one whose key the database assigns has none
    yet, and the send says to flush first or use post_save, failing the transaction."""
    tm.pre_save.connect(shop.welcome, sender=shop.Customer, delivery="durable")
    with Session(box.engine) as session:
        with session.begin():
            session.add(shop.Customer(id=14, email="m@example.com"))
        refused = pytest.raises(PayloadTypeError, match="connect the receiver to post_save")
        with refused, session.begin():
            session.add(shop.Customer(email="n@example.com"))
    Relay(box).run(once=True)
    [(_, call)] = shop.CALLS
    assert (call["instance"].id, call["instance"].email) == (14, "m@example.com")


@pytest.mark.parametrize("expired", [False, True], ids=["loaded", "expired by a commit"])
def test_pre_delete_sends_a_snapshot_with_every_column(box: Outbox, expired: bool) -> None:
    """pre_delete with a durable receiver: the instance is about to go, so it is stored as a
    snapshot (not a reference the worker would find gone), its columns loaded first if a
    commit had expired them."""
    tm.pre_delete.connect(shop.welcome, sender=shop.Customer, delivery="durable")
    with Session(box.engine) as session:
        with session.begin():
            customer = shop.Customer(id=12, email="k@example.com")
            session.add(customer)
        with session.begin():
            if not expired:
                session.refresh(customer)
            session.delete(customer)
    Relay(box).run(once=True)
    [(_, call)] = shop.CALLS
    assert (call["instance"].id, call["instance"].email) == (12, "k@example.com")


def test_an_unstorable_argument_fails_the_senders_transaction(box: Outbox) -> None:
    """A PayloadTypeError names the signal, receiver and argument; nothing is written."""
    shop.order_placed.connect(shop.send_receipt, delivery="durable")
    with Session(box.engine) as session:

        def order() -> None:
            with session.begin():
                session.add(shop.Customer(id=9, email="h@example.com"))
                session.flush()
                shop.order_placed.send(None, order_id=1, note=object())

        with pytest.raises(PayloadTypeError) as caught:
            order()
        assert session.scalar(select(func.count()).select_from(shop.Customer)) == 0
    message = str(caught.value)
    assert "shop.order_placed" in message
    assert "tests.outbox.shop.send_receipt" in message
    assert "'note'" in message
    assert pending(box) == 0


def test_send_robust_raises_an_unstorable_argument_too(box: Outbox) -> None:
    """send_robust does not catch a payload error: it is the sender's bug."""
    shop.order_placed.connect(shop.send_receipt, delivery="durable")
    with pytest.raises(PayloadTypeError, match="'sender'"):
        shop.order_placed.send_robust(object())
    assert pending(box) == 0


def test_a_session_with_the_outbox_on_another_of_its_binds_writes_there(
    box: Outbox, tmp_path: Path
) -> None:
    """``Session(bind=other, binds={Customer: outbox engine})``: the rows go on the outbox
    engine's connection, in the Session's transaction, not on the default bind's."""
    other = create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        elsewhere = Outbox(other, prefix=box.tables.pending.name)  # the same tables there
        elsewhere.create_all()
        tm.post_save.connect(shop.welcome, sender=shop.Customer, delivery="durable")
        session = Session(bind=other, binds={shop.Customer: box.engine})
        with session, session.begin():
            session.add(shop.Customer(id=15, email="o@example.com"))
        assert [json.loads(row.payload)["instance"]["pk"] for row in rows(box)] == [[15]]
        assert elsewhere.status().pending == 0
    finally:
        other.dispose()


def test_writing_on_binds_a_core_connection(box: Outbox) -> None:
    """Under writing_on(conn) the row is written in conn's transaction and rolls back with it;
    a send before conn has begun one begins it, as a statement would."""
    shop.order_placed.connect(shop.send_receipt, delivery="durable")
    with box.engine.connect() as conn, writing_on(conn):
        shop.order_placed.send(None, order_id=1)
        assert conn.in_transaction()
        conn.rollback()
        conn.execute(text("SELECT 1"))
        shop.order_placed.send(None, order_id=2)
        conn.rollback()
        shop.order_placed.send(None, order_id=3)
        conn.commit()
    assert [row.payload for row in rows(box)] == ['{"sender":null,"order_id":3}']


# -- async producers --------------------------------------------------------------------------


def _async_url(engine: Engine) -> str:
    url = engine.url
    driver = "aiosqlite" if url.get_backend_name() == "sqlite" else "asyncpg"
    return url.set(drivername=f"{url.get_backend_name()}+{driver}").render_as_string(False)


def test_async_session_producers_write_in_their_transaction(box: Outbox, engine: Engine) -> None:
    """Under AsyncSession, model signals and sends from async code store their rows with the
    transaction: committed ones stay, a rolled-back savepoint and transaction leave none."""
    tm.post_save.connect(shop.welcome, sender=shop.Customer, delivery="durable")
    shop.order_placed.connect(shop.notify, delivery="durable")

    async def main() -> None:
        async_engine = create_async_engine(_async_url(engine))
        try:
            async with AsyncSession(async_engine) as session:
                async with session.begin():
                    session.add(shop.Customer(id=1, email="a@example.com"))
                    await session.flush()
                    await shop.order_placed.asend(None, order_id=1)
                    savepoint = await session.begin_nested()
                    shop.order_placed.send(None, order_id=2)
                    await savepoint.rollback()
                async with session.begin():
                    await shop.order_placed.asend(None, order_id=3)
                    await session.rollback()
        finally:
            await async_engine.dispose()

    asyncio.run(main())
    assert [(row.receiver, row.payload) for row in rows(box)] == [
        (
            "tests.outbox.shop.welcome",
            '{"sender":{"$t":"class","v":"tests.outbox.shop:Customer"},"instance":'
            '{"$t":"model","cls":"tests.outbox.shop:Customer","pk":[1]},"created":true,'
            '"raw":false,"using":"default","update_fields":null,"changes":{}}',
        ),
        ("tests.outbox.shop.notify", '{"sender":null,"order_id":1}'),
    ]


# -- other modes through the same writer ------------------------------------------------------


def publish_somewhere(**kwargs: Any) -> None:
    """A queue receiver (run by consumers elsewhere)."""


def test_another_mode_uses_the_same_writer_and_a_pluggable_action(box: Outbox) -> None:
    """OutboxHandler(Delivery.QUEUE) stores queue rows; only a relay with a queue action claims
    them, and hands each row to it."""
    previous = handler_for(Delivery.QUEUE)
    register_handler(Delivery.QUEUE, OutboxHandler(Delivery.QUEUE))
    try:
        shop.order_placed.connect(publish_somewhere, delivery="queue")
        shop.order_placed.connect(shop.send_receipt, delivery="durable")
        assert shop.order_placed.send(None, order_id=4) == [
            (publish_somewhere, Delivery.QUEUE),
            (shop.send_receipt, Delivery.DURABLE),
        ]
    finally:
        shop.order_placed.receivers = []
        register_handler(Delivery.QUEUE, previous)  # tidings.outbox's own
    Relay(box).run(once=True)
    assert [name for name, _ in shop.CALLS] == ["send_receipt"]
    [row] = rows(box)
    assert row.delivery == "queue"
    published: list[Claimed] = []
    Relay(box, actions={"queue": published.append}, durable=False).run(once=True)
    assert [(r.receiver, r.delivery, r.event_id) for r in published] == [
        ("tests.outbox.test_durable_mode.publish_somewhere", "queue", row.event_id)
    ]
    assert isinstance(published[0].event_id, uuid.UUID)
    assert pending(box) == 0


def test_a_failing_action_is_retried_like_a_receiver(box: Outbox) -> None:
    """An action's exception is a failed attempt: the row stays, due again after a backoff."""
    previous = handler_for(Delivery.QUEUE)
    register_handler(Delivery.QUEUE, OutboxHandler(Delivery.QUEUE))
    try:
        shop.order_placed.connect(publish_somewhere, delivery="queue", max_attempts=1)
        shop.order_placed.send(None)
    finally:
        shop.order_placed.receivers = []
        register_handler(Delivery.QUEUE, previous)  # tidings.outbox's own

    def refuse(row: Claimed) -> None:
        raise ConnectionError("broker down")

    relay = Relay(box, actions={"queue": refuse}, durable=False)
    relay.run(once=True)
    [letter] = box.dead_letters()
    assert (letter.delivery, letter.error) == ("queue", "ConnectionError: broker down")
    assert relay.stats.dead == 1


def test_signal_names_of_model_signals_are_theirs() -> None:
    """Model signals carry their Django names, so they take durable receivers as they are."""
    assert [s.name for s in (tm.post_save, tm.post_delete, tm.m2m_changed)] == [
        "post_save",
        "post_delete",
        "m2m_changed",
    ]
    assert isinstance(tm.post_save, Signal)
