"""Receivers connected with delivery="on_commit": called after the commit of the send's Session.

Rollbacks, failing commits, ``close()`` and threads are tested for receivers and ``on_commit()``
callables alike in ``test_on_commit.py`` (its ``route`` fixture).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Column, ForeignKey, String, Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from tests.integrations.sqlalchemy.programs import (
    ASYNC_VIAS,
    VIAS,
    Flavor,
    Mail,
    Row,
    expected,
    new_mail,
    receivers,
    run_django_programs,
    run_flavor,
    run_programs,
    scenarios,
    three_deep,
)
from tidings import AsyncReceiversInEventLoopError, Delivery, DeliveryOptionsError, Signal
from tidings.models import m2m_changed, post_bulk_update, post_delete, post_save
from tidings.sqlalchemy import AmbiguousSessionError, in_transaction, instrument, on_commit

signed_up = Signal(name="signed_up")


@pytest.fixture
def connected() -> Iterator[list[Any]]:
    """Disconnects, after the test, every receiver the test appends (``(signal, receiver)``)."""
    pairs: list[Any] = []
    yield pairs
    for signal, receiver in pairs:
        signal.disconnect(receiver)


def _connect(pairs: list[Any], signal: Signal, receiver: Any, **kwargs: Any) -> None:
    signal.connect(receiver, **kwargs)
    pairs.append((signal, receiver))


# -- which callbacks run, in which order (SQLAlchemy, Django, the model) -----------------------


@pytest.mark.parametrize("via", ["signal", "model"])
def test_savepoints_three_deep_every_outcome(flavor: Flavor, via: Any) -> None:
    """Receivers sent inside savepoints three deep, every combination of release and rollback,
    and commit / rollback / exception in begin(): exactly those of surviving blocks run, in send
    order, after the outermost commit."""
    programs = [*three_deep((via,)), *scenarios(via).values()]
    logs = run_programs(flavor, programs)
    assert logs == [expected(program) for program in programs]
    assert ["r1", "a1", "b1", "c", "b2", "a2", "r2"] in logs
    assert logs.count([]) == 8 + 2


def test_async_receivers_keep_their_place_in_savepoints(async_flavor: Flavor) -> None:
    """On an AsyncSession, async on_commit receivers mixed with sync receivers, callables and
    model signals in savepoints three deep run in send order, as the model says."""
    programs = [*three_deep(ASYNC_VIAS), *three_deep(ASYNC_VIAS[::-1])]
    programs.extend(scenarios("async").values())
    logs = run_programs(async_flavor, programs)
    assert logs == [expected(program) for program in programs]
    assert ["r1", "a1", "b1", "c", "b2", "a2", "r2"] in logs


def test_django_runs_the_same_callbacks_in_the_same_order() -> None:
    """Django's transaction.on_commit, called from a plain receiver, from a post_save receiver
    and directly, runs the same callbacks in the same order as on_commit receivers do."""
    programs = [*three_deep(VIAS), *three_deep(VIAS[::-1])]
    for via in VIAS:
        programs.extend(scenarios(via).values())
    django_logs = run_django_programs(programs)
    assert django_logs == run_programs(Flavor("sqlite"), programs)
    assert django_logs == [expected(program) for program in programs]


# -- the call ----------------------------------------------------------------------------------


def test_called_once_after_the_commit_with_the_send_arguments(
    flavor: Flavor, connected: list[Any]
) -> None:
    """send() and asend() return the marker for a deferred receiver; after the commit it is
    called once with exactly the send's arguments, in send order (async receivers awaited
    before commit() returns)."""
    calls: list[tuple[str, dict[str, Any]]] = []
    payload = object()

    def sync_receiver(**kwargs: Any) -> str:
        calls.append(("sync", kwargs))
        return "sync response"

    async def async_receiver(**kwargs: Any) -> str:
        await asyncio.sleep(0)
        calls.append(("async", kwargs))
        return "async response"

    _connect(connected, signed_up, sync_receiver, delivery="on_commit")
    if flavor.is_async:
        _connect(connected, signed_up, async_receiver, delivery=Delivery.ON_COMMIT)
    responses: list[Any] = []

    async def scenario(flavor: Flavor) -> None:
        async with flavor.session() as db:
            async with db.block(nested=False):
                db.session.add(Row(label="x"))
                responses.append(signed_up.send(None, email="ada", payload=payload))
                responses.append(await signed_up.asend(None, email="bob", payload=payload))
                assert calls == []
            responses.append(list(calls))

    run_flavor(flavor, scenario)
    receivers_ = [sync_receiver, async_receiver] if flavor.is_async else [sync_receiver]
    marker = [(r, Delivery.ON_COMMIT) for r in receivers_]
    assert responses[:2] == [marker, marker]
    names = [name for name, _ in responses[2]]
    per_send = len(receivers_)
    assert names == [n for _ in range(2) for n in ("sync", "async")[:per_send]]
    emails = [email for email in ("ada", "bob") for _ in range(per_send)]
    for (_, kwargs), email in zip(responses[2], emails, strict=True):
        assert kwargs == {"signal": signed_up, "sender": None, "email": email, "payload": payload}
        assert kwargs["payload"] is payload


def test_with_no_transaction_open_the_receiver_is_called_at_once(
    sqlite_engine: Any, connected: list[Any]
) -> None:
    """With no transaction open, the receiver is called in its place and its real response is
    returned; send_robust() catches its failure as for an immediate receiver."""

    def mail(email: str, **kwargs: Any) -> str:
        if email == "bad":
            raise ValueError(email)
        return f"mailed {email}"

    _connect(connected, signed_up, mail, delivery="on_commit")
    with Session(sqlite_engine) as session:
        assert not session.in_transaction()
        assert signed_up.send(None, email="ada") == [(mail, "mailed ada")]
        [(receiver, error)] = signed_up.send_robust(None, email="bad")
        assert receiver is mail
        assert isinstance(error, ValueError)
        with pytest.raises(ValueError, match="bad"):
            signed_up.send(None, email="bad")


def test_a_model_receiver_uses_the_session_after_the_commit(
    flavor: Flavor, connected: list[Any]
) -> None:
    """A post_save receiver with delivery="on_commit" reads the committed instance's expired
    attributes and commits new work on the same Session (an async one awaits the
    AsyncSession), after commit() returned nothing is left pending."""
    seen: list[Any] = []
    sessions: list[Any] = []

    def on_saved(instance: Mail, **kwargs: Any) -> None:
        seen.append(instance.label)  # expired by the commit: reloaded here
        session = sessions[0]
        sync = session.sync_session if isinstance(session, AsyncSession) else session
        sync.add(Row(label=f"after {instance.label}"))
        sync.commit()

    async def on_saved_async(instance: Mail, **kwargs: Any) -> None:
        session = sessions[0]
        await session.refresh(instance)
        seen.append(("async", instance.label))
        session.add(Row(label=f"async after {instance.label}"))
        await session.commit()

    async def scenario(flavor: Flavor) -> None:
        async with flavor.session() as db:
            sessions.append(db.session)
            db.session.add(new_mail("ada", []))
            await db.call("commit")
            seen.append("commit returned")
            seen.append(list(await db.call("scalars", select(Row.label).order_by(Row.id))))

    with receivers():
        _connect(connected, post_save, on_saved, sender=Mail, delivery="on_commit")
        if flavor.is_async:
            _connect(connected, post_save, on_saved_async, sender=Mail, delivery="on_commit")
        run_flavor(flavor, scenario)
    if flavor.is_async:
        assert seen == [
            "ada",
            ("async", "ada"),
            "commit returned",
            ["after ada", "async after ada"],
        ]
    else:
        assert seen == ["ada", "commit returned", ["after ada"]]


def test_a_failing_receiver_is_logged_and_the_others_still_run(
    flavor: Flavor, connected: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A deferred receiver's exception is logged to the tidings logger naming the receiver and
    the signal, with the traceback; the later receivers run and the commit stays done."""
    log: list[str] = []

    def first(**kwargs: Any) -> None:
        log.append("first")

    def broken(**kwargs: Any) -> None:
        raise ZeroDivisionError("boom")

    def last(**kwargs: Any) -> None:
        log.append("last")

    async def async_broken(**kwargs: Any) -> None:
        raise KeyError("async boom")

    for receiver in (first, broken, last):
        _connect(connected, signed_up, receiver, delivery="on_commit")
    if flavor.is_async:
        _connect(connected, signed_up, async_broken, delivery="on_commit")

    async def scenario(flavor: Flavor) -> None:
        async with flavor.session() as db:
            db.session.add(Row(label="kept"))
            signed_up.send(None)
            await db.call("commit")
            log.extend(await db.call("scalars", select(Row.label)))

    with caplog.at_level(logging.ERROR, logger="tidings"):
        run_flavor(flavor, scenario)
    assert log == ["first", "last", "kept"]
    errors = [r for r in caplog.records if r.name.startswith("tidings") and r.exc_info]
    raised = [ZeroDivisionError, KeyError] if flavor.is_async else [ZeroDivisionError]
    assert [r.exc_info[0] for r in errors if r.exc_info] == raised
    message = errors[0].getMessage()
    assert "<locals>.broken" in message
    assert "'signed_up'" in message
    if flavor.is_async:
        assert "<locals>.async_broken" in errors[1].getMessage()


@pytest.mark.parametrize("kind", ["function", "method"])
def test_a_weak_receiver_that_dies_before_the_commit_is_skipped(
    sqlite_engine: Any, connected: list[Any], kind: str
) -> None:
    """A weakly connected receiver deferred in a transaction and garbage-collected before the
    commit is not called; the deferral did not keep it alive; a strong one still runs."""
    log: list[str] = []

    class Mailer:
        def mail(self, **kwargs: Any) -> None:
            log.append("method")

    def strong(**kwargs: Any) -> None:
        log.append("strong")

    def weak(**kwargs: Any) -> None:
        log.append("function")

    _connect(connected, signed_up, strong, delivery="on_commit", weak=False)
    owner = Mailer()
    target: Any = owner.mail if kind == "method" else weak
    signed_up.connect(target, delivery="on_commit")
    with Session(sqlite_engine) as session:
        session.add(Row())
        assert len(signed_up.send(None)) == 2
        del target, owner, weak
        gc.collect()
        session.commit()
    assert log == ["strong"]


def test_options_are_refused_at_connect(connected: list[Any]) -> None:
    """delivery="on_commit" takes no options: any is a DeliveryOptionsError naming it, the
    receiver and the signal, and nothing is connected."""

    def mail(**kwargs: Any) -> None:
        pass  # pragma: no cover - never called

    with pytest.raises(DeliveryOptionsError, match=r"retries") as info:
        signed_up.connect(mail, delivery="on_commit", retries=3)
    assert "'signed_up'" in str(info.value)
    assert ".mail" in str(info.value)
    assert not signed_up.has_connections()


def test_live_receivers_show_the_delivery_mode(connected: list[Any]) -> None:
    """live_receivers() reports delivery=ON_COMMIT for an on_commit receiver."""

    def mail(**kwargs: Any) -> None:
        pass  # pragma: no cover - never called

    def log(**kwargs: Any) -> None:
        pass  # pragma: no cover - never called

    _connect(connected, signed_up, mail, delivery="on_commit")
    _connect(connected, signed_up, log)
    modes = {info.receiver: info.delivery for info in signed_up.live_receivers()}
    assert modes == {mail: Delivery.ON_COMMIT, log: Delivery.IMMEDIATE}


# -- which Session -----------------------------------------------------------------------------


def test_two_sessions_open_is_an_error_a_flush_or_a_binding_chooses(
    sqlite_engine: Any, connected: list[Any]
) -> None:
    """A plain signal sent with two Sessions open is an AmbiguousSessionError naming both;
    in_transaction() chooses one, and a model signal joins the flushing Session."""
    log: list[str] = []

    def mail(email: str, **kwargs: Any) -> None:
        log.append(email)

    _connect(connected, signed_up, mail, delivery="on_commit")
    with receivers():
        first, second = Session(sqlite_engine), Session(sqlite_engine)
        try:
            first.add(Row(label="first"))
            second.add(Row(label="second"))
            first.flush()
            second.flush()
            with pytest.raises(AmbiguousSessionError) as info:
                signed_up.send(None, email="nobody")
            assert str(info.value).count("<Session at 0x") == 2
            assert hex(id(first)) in str(info.value)
            assert hex(id(second)) in str(info.value)
            with in_transaction(second):
                signed_up.send(None, email="second")
            first.add(new_mail("first's mail", log))
            first.flush()  # post_save of Mail, deferred to the flushing Session
            first.commit()
            assert log == ["first's mail"]
            second.commit()
            assert log == ["first's mail", "second"]
        finally:
            first.close()
            second.close()


def test_every_model_signal_joins_the_session_that_sent_it(
    sqlite_engine: Any, connected: list[Any]
) -> None:
    """post_save, m2m_changed, post_bulk_update and post_delete receivers with
    delivery="on_commit" join the Session whose flush or statement sent them, while another
    Session is open in the same thread (where a plain signal would be ambiguous)."""

    class Base(DeclarativeBase):
        __app_label__ = "oncommit_models"

    links = Table(
        "oncommit_article_tag",
        Base.metadata,
        Column("article_id", ForeignKey("oncommit_article.id"), primary_key=True),
        Column("tag_id", ForeignKey("oncommit_tag.id"), primary_key=True),
    )

    class Tag(Base):
        __tablename__ = "oncommit_tag"
        id: Mapped[int] = mapped_column(primary_key=True)

    class Article(Base):
        __tablename__ = "oncommit_article"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(String(50))
        tags: Mapped[list[Tag]] = relationship(secondary=links)

    instrument(Base)
    Base.metadata.create_all(sqlite_engine)
    log: list[str] = []

    def record(signal: Any, sender: Any, **kwargs: Any) -> None:
        log.append(f"{signal.name} {kwargs.get('action', '')}".strip())

    for signal in (post_save, m2m_changed, post_bulk_update, post_delete, signed_up):
        _connect(connected, signal, record, sender=None, delivery="on_commit")
    sending, other = Session(sqlite_engine), Session(sqlite_engine)
    try:
        other.add(Row(label="other"))
        other.flush()
        article = Article(title="a")
        sending.add(article)
        sending.flush()
        article.tags.append(Tag())
        sending.flush()
        sending.execute(update(Article).values(title="b"))
        sending.delete(article)
        sending.flush()
        with pytest.raises(AmbiguousSessionError):
            signed_up.send(None)  # a plain signal: the two open Sessions make it ambiguous
        other.commit()
        assert log == []
        sending.commit()
    finally:
        sending.close()
        other.close()
        Base.metadata.drop_all(sqlite_engine)
    assert log == [
        "post_save",  # the Article
        "post_save",  # the Tag
        "m2m_changed pre_add",
        "m2m_changed post_add",
        "post_bulk_update",
        "post_delete",
    ]


def test_two_sessions_in_two_tasks_at_once(async_flavor: Flavor, connected: list[Any]) -> None:
    """Two asyncio tasks, each with its own AsyncSession, interleave their sends (send and
    asend, sync and async receivers): each task's run at its own commit only."""
    ran: dict[str, list[str]] = {"commit": [], "rollback": []}

    def mail(outcome: str, step: int, **kwargs: Any) -> None:
        ran[outcome].append(f"sync {step}")

    async def amail(outcome: str, step: int, **kwargs: Any) -> None:
        ran[outcome].append(f"async {step}")

    _connect(connected, signed_up, mail, delivery="on_commit")
    _connect(connected, signed_up, amail, delivery="on_commit")

    async def task(flavor: Flavor, outcome: str) -> None:
        async with flavor.session() as db:
            db.session.add(Row(label=outcome))
            await db.call("flush")
            for step in range(5):
                if step % 2:
                    signed_up.send(None, outcome=outcome, step=step)
                else:
                    await signed_up.asend(None, outcome=outcome, step=step)
                await asyncio.sleep(0)
            await db.call(outcome)

    async def scenario(flavor: Flavor) -> None:
        await asyncio.gather(task(flavor, "commit"), task(flavor, "rollback"))

    run_flavor(async_flavor, scenario)
    assert ran == {
        "commit": [f"{kind} {n}" for n in range(5) for kind in ("sync", "async")],
        "rollback": [],
    }


# -- the commit phase --------------------------------------------------------------------------


def test_work_sent_during_the_commit_phase_matches_django(
    flavor: Flavor, connected: list[Any]
) -> None:
    """A deferred receiver that, at the commit, sends a signal to another on_commit receiver and
    registers on_commit work runs both at once (no transaction is open then), and what it
    sends inside a transaction it opens at that transaction's commit, before the remaining
    receivers: the order Django gives for the same callbacks."""
    from tests.integrations.sqlalchemy.programs import django_ready

    log: list[str] = []
    nested = Signal(name="nested")
    sessions: list[Session] = []

    def outer(email: str, **kwargs: Any) -> None:
        log.append(f"outer {email}")
        nested.send(None, email=email)
        on_commit(lambda: log.append(f"function {email}"))
        with sessions[0].begin():
            nested.send(None, email=f"{email} in a new transaction")
            log.append(f"new transaction {email}")
        log.append(f"outer {email} done")

    def inner(email: str, **kwargs: Any) -> None:
        log.append(f"inner {email}")

    _connect(connected, signed_up, outer, delivery="on_commit")
    _connect(connected, nested, inner, delivery="on_commit")

    async def scenario(flavor: Flavor) -> None:
        async with flavor.session() as db:
            sessions.append(db.sync)
            async with db.block(nested=False):
                db.session.add(Row())
                signed_up.send(None, email="a")
                signed_up.send(None, email="b")
                assert log == []
            log.append("commit returned")

    run_flavor(flavor, scenario)

    django_log: list[str] = []
    with django_ready():
        from django.db import transaction

        def django_outer(email: str) -> None:
            django_log.append(f"outer {email}")
            transaction.on_commit(lambda: django_log.append(f"inner {email}"))
            transaction.on_commit(lambda: django_log.append(f"function {email}"))
            with transaction.atomic():
                transaction.on_commit(
                    lambda: django_log.append(f"inner {email} in a new transaction")
                )
                django_log.append(f"new transaction {email}")
            django_log.append(f"outer {email} done")

        with transaction.atomic():
            transaction.on_commit(lambda: django_outer("a"))
            transaction.on_commit(lambda: django_outer("b"))
        django_log.append("commit returned")
    assert log == django_log
    assert log[:6] == [
        "outer a",
        "inner a",
        "function a",
        "new transaction a",
        "inner a in a new transaction",
        "outer a done",
    ]


def test_an_async_receiver_on_a_sync_session_in_a_running_loop_is_refused(
    sqlite_engine: Any, connected: list[Any]
) -> None:
    """A sync Session's commit in an event loop thread could not await an async on_commit
    receiver, so the send raises AsyncReceiversInEventLoopError naming the receiver and the
    signal; nothing is queued."""

    async def mail(**kwargs: Any) -> None:
        pass  # pragma: no cover - never called

    _connect(connected, signed_up, mail, delivery="on_commit")

    async def main() -> None:
        with Session(sqlite_engine) as session:
            session.add(Row())
            session.flush()
            with pytest.raises(AsyncReceiversInEventLoopError) as info:
                await signed_up.asend(None)
            assert ".mail" in str(info.value)
            assert "'signed_up'" in str(info.value)
            session.commit()

    asyncio.run(main())


# -- the test helpers --------------------------------------------------------------------------


def test_muted_decides_at_the_send(sqlite_engine: Any, connected: list[Any]) -> None:
    """A receiver muted during the send is neither called nor deferred; one deferred before
    muted() began, or disconnected after its send, still runs at the commit."""
    from tidings.testing import muted

    log: list[str] = []

    def mail(email: str, **kwargs: Any) -> None:
        log.append(email)

    _connect(connected, signed_up, mail, delivery="on_commit")
    with Session(sqlite_engine) as session:
        session.add(Row())
        with muted(signed_up):
            assert signed_up.send(None, email="muted") == []
        with muted(signed_up, receivers=[mail]):
            assert signed_up.send(None, email="muted receiver") == []
        signed_up.send(None, email="before muted")
        with muted(signed_up):
            session.commit()
    assert log == ["before muted"]
    with Session(sqlite_engine) as session:
        session.add(Row())
        signed_up.send(None, email="disconnected later")
        signed_up.disconnect(mail)
        session.commit()
    assert log == ["before muted", "disconnected later"]


def test_capture_records_the_send_and_capture_on_commit_takes_the_receivers(
    sqlite_engine: Any, connected: list[Any]
) -> None:
    """capture() records a send whose receiver is deferred, when it is made;
    capture_on_commit() takes the deferred receivers instead of the commit and runs them on
    exit with execute=True, each with its send's arguments."""
    from tidings.testing import capture, capture_on_commit

    log: list[str] = []

    def mail(email: str, **kwargs: Any) -> None:
        log.append(email)

    _connect(connected, signed_up, mail, delivery="on_commit")
    with Session(sqlite_engine) as session:
        session.add(Row())
        with capture(signed_up) as sent, capture_on_commit(execute=True) as callbacks:
            responses = signed_up.send(None, email="ada")
            signed_up.send(None, email="bob")
            sent.assert_sent_with(email="ada")
            assert responses[1:] == [(mail, Delivery.ON_COMMIT)]
            session.commit()
            assert log == []
        assert sent.count == 2
        assert log == ["ada", "bob"]
        assert len(callbacks) == 2
        assert "test_on_commit_receivers" in repr(callbacks[0])
        assert "signed_up" in repr(callbacks[0])
