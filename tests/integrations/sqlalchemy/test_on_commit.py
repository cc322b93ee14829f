"""tidings.sqlalchemy.on_commit: work that runs after the outermost commit, savepoint-correct."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from tests.core._support import run_threads
from tests.integrations.sqlalchemy.programs import (
    Flavor,
    Row,
    Via,
    defer_work,
    django_ready,
    expected,
    run_django_programs,
    run_flavor,
    run_programs,
    scenarios,
    three_deep,
)
from tidings import AsyncReceiversInEventLoopError, InvalidReceiverError, TidingsError
from tidings.sqlalchemy import AmbiguousSessionError, current_session, in_transaction, on_commit


def test_savepoints_three_deep_every_outcome(flavor: Flavor) -> None:
    """Savepoints three deep, every combination of release and rollback (and the root's): the
    work of rolled-back savepoints is dropped, the rest runs in order after the commit."""
    programs = [*three_deep(), *scenarios().values()]
    logs = run_programs(flavor, programs)
    assert len(logs) == 16 + len(scenarios())
    assert logs == [expected(program) for program in programs]
    assert ["r1", "a1", "b1", "c", "b2", "a2", "r2"] in logs


def test_django_runs_the_same_callbacks_in_the_same_order() -> None:
    """Django's transaction.on_commit, given the same programs, runs the same callbacks in the
    same order as tidings.sqlalchemy.on_commit and as the model."""
    programs = [*three_deep(), *scenarios().values()]
    django_logs = run_django_programs(programs)
    assert django_logs == run_programs(Flavor("sqlite"), programs)
    assert django_logs == [expected(program) for program in programs]


def test_work_registered_during_the_commit_phase_matches_django(sqlite_engine: Any) -> None:
    """A callback that registers work with no transaction open runs it at once, and one that
    opens a transaction and registers work runs it at that commit, before the remaining
    callbacks: the order Django gives."""

    def scenario(log: list[str], begin: Any, register: Any) -> None:
        def first() -> None:
            log.append("first")
            register(functools.partial(log.append, "registered in phase"))
            with begin():
                register(functools.partial(log.append, "inner transaction"))
                log.append("inner body")
            log.append("first done")

        with begin():
            register(first)
            register(functools.partial(log.append, "second"))
        log.append("after commit")

    django_log: list[str] = []
    with django_ready():
        from django.db import transaction

        scenario(django_log, transaction.atomic, transaction.on_commit)
    our_log: list[str] = []
    with Session(sqlite_engine) as session:
        scenario(our_log, session.begin, on_commit)
    assert our_log == django_log
    assert our_log == [
        "first",
        "registered in phase",
        "inner body",
        "inner transaction",
        "first done",
        "second",
        "after commit",
    ]


@pytest.mark.parametrize("how", ["commit()", "with begin()"])
def test_callbacks_can_use_the_session_after_the_commit(flavor: Flavor, how: str) -> None:
    """A callback reloads expired attributes of what was committed and commits new work on the
    same Session (sync callbacks under AsyncSession too; async ones await the AsyncSession),
    after commit() and at the end of a ``with session.begin():`` block alike."""
    seen: list[Any] = []

    async def scenario(flavor: Flavor) -> None:
        async with flavor.session() as db:
            row = Row(label="first")

            def sync_callback() -> None:
                seen.append(row.label)  # expired by the commit: reloaded here
                db.sync.add(Row(label="from sync callback"))
                db.sync.commit()

            async def async_callback() -> None:
                assert isinstance(db.session, AsyncSession)
                await db.session.refresh(row)
                seen.append(row.id)
                db.session.add(Row(label="from async callback"))
                await db.session.commit()

            async def work() -> None:
                db.session.add(row)
                await db.call("flush")
                on_commit(sync_callback)
                if db.is_async:
                    on_commit(async_callback)

            if how == "commit()":
                await work()
                await db.call("commit")
            else:
                async with db.block(nested=False):
                    await work()
            seen.append("commit returned")
            labels = await db.call("scalars", select(Row.label).order_by(Row.id))
            seen.append(list(labels))

    run_flavor(flavor, scenario)
    if flavor.is_async:
        assert seen == [
            "first",
            1,
            "commit returned",
            ["first", "from sync callback", "from async callback"],
        ]
    else:
        assert seen == ["first", "commit returned", ["first", "from sync callback"]]


def test_a_failing_callback_is_logged_and_the_others_still_run(
    flavor: Flavor, caplog: pytest.LogCaptureFixture
) -> None:
    """A callback's exception is logged to the tidings logger with the callable and the
    traceback; the later callbacks run, and the commit stays done."""
    log: list[str] = []

    def broken() -> None:
        raise ZeroDivisionError("boom")

    async def async_broken() -> None:
        raise KeyError("async boom")

    async def scenario(flavor: Flavor) -> None:
        async with flavor.session() as db:
            db.session.add(Row(label="kept"))
            on_commit(functools.partial(log.append, "before"))
            on_commit(broken)
            if db.is_async:
                on_commit(async_broken)
            on_commit(functools.partial(log.append, "after"))
            await db.call("commit")
            log.extend(await db.call("scalars", select(Row.label)))

    with caplog.at_level(logging.ERROR, logger="tidings"):
        run_flavor(flavor, scenario)
    assert log == ["before", "after", "kept"]
    errors = [r for r in caplog.records if r.name.startswith("tidings")]
    raised = [ZeroDivisionError, KeyError] if flavor.is_async else [ZeroDivisionError]
    assert [r.exc_info[0] for r in errors if r.exc_info] == raised
    assert "test_on_commit.test_a_failing_callback_is_logged" in errors[0].getMessage()
    assert "<locals>.broken" in errors[0].getMessage()
    if flavor.is_async:
        assert "<locals>.async_broken" in errors[1].getMessage()


def test_a_commit_that_fails_calls_nothing(shared_postgres_url: str, route: Via) -> None:
    """A deferred foreign key violated at COMMIT (PostgreSQL): the commit raises, nothing is
    called, neither then nor after the rollback; sync Session and AsyncSession, on_commit()
    work and on_commit receivers."""
    log: list[str] = []
    postgres_url = shared_postgres_url
    ddl = [
        "DROP TABLE IF EXISTS oncommit_child, oncommit_parent",
        "CREATE TABLE oncommit_parent (id INTEGER PRIMARY KEY)",
        "CREATE TABLE oncommit_child (id INTEGER PRIMARY KEY, parent_id INTEGER "
        "REFERENCES oncommit_parent (id) DEFERRABLE INITIALLY DEFERRED)",
    ]
    insert = text("INSERT INTO oncommit_child (id, parent_id) VALUES (1, 42)")
    engine = create_engine(postgres_url.replace("postgresql:", "postgresql+psycopg:"))
    try:
        with engine.begin() as connection:
            for statement in ddl:
                connection.execute(text(statement))
        with Session(engine) as session:
            session.execute(insert)
            defer_work(route, functools.partial(log.append, "sync"))
            with pytest.raises(Exception, match="foreign key"):
                session.commit()
            session.rollback()
            session.commit()
    finally:
        engine.dispose()

    async def main() -> None:
        engine = create_async_engine(postgres_url.replace("postgresql:", "postgresql+asyncpg:"))
        try:
            async with AsyncSession(engine) as session:
                await session.execute(insert)
                defer_work(route, functools.partial(log.append, "async"))
                with pytest.raises(Exception, match="foreign key"):
                    await session.commit()
                await session.rollback()
                await session.commit()
        finally:
            await engine.dispose()

    try:
        asyncio.run(main())
    finally:
        engine = create_engine(postgres_url.replace("postgresql:", "postgresql+psycopg:"))
        with engine.begin() as connection:
            connection.execute(text(ddl[0]))
        engine.dispose()
    assert log == []


def test_close_without_commit_calls_nothing(flavor: Flavor, route: Via) -> None:
    """Work (a callable or an on_commit receiver) registered in a transaction the Session closes
    without committing never runs, not even at the Session's next commit."""
    log: list[str] = []

    async def scenario(flavor: Flavor) -> None:
        async with flavor.session() as db:
            db.session.add(Row(label="x"))
            await db.call("flush")
            defer_work(route, functools.partial(log.append, "closed"))
            await db.call("close")
            db.session.add(Row(label="y"))
            defer_work(route, functools.partial(log.append, "committed"))
            await db.call("commit")

    run_flavor(flavor, scenario)
    assert log == ["committed"]


def test_outside_a_transaction_the_callable_runs_at_once(sqlite_engine: Any) -> None:
    """With no transaction open, on_commit() calls at once and lets its exception propagate,
    as Django's on_commit outside atomic does."""
    log: list[str] = []
    on_commit(functools.partial(log.append, "no session"))
    with Session(sqlite_engine) as session:
        on_commit(functools.partial(log.append, "idle session"))
        assert not session.in_transaction()
        session.add(Row())
        session.commit()
        on_commit(functools.partial(log.append, "after commit"), session=session)
        with pytest.raises(ZeroDivisionError):
            on_commit(lambda: 1 / 0)
    assert log == ["no session", "idle session", "after commit"]


def test_an_async_callable_outside_a_transaction() -> None:
    """An async callable with no transaction open is awaited in a loop of its own from sync
    code, and refused inside a running loop (it cannot be awaited from a sync call there)."""
    log: list[str] = []

    async def callback() -> None:
        log.append("awaited")

    on_commit(callback)

    async def main() -> None:
        with pytest.raises(AsyncReceiversInEventLoopError, match="callback"):
            on_commit(callback)

    asyncio.run(main())
    assert log == ["awaited"]


def test_async_callables_on_a_sync_session(sqlite_engine: Any) -> None:
    """A sync Session awaits an async callable in a loop of its own at commit; in a thread whose
    loop is running it refuses the async callable when it is registered, naming it."""
    log: list[str] = []

    async def callback() -> None:
        await asyncio.sleep(0)
        log.append("awaited")

    with Session(sqlite_engine) as session:
        session.add(Row())
        on_commit(callback)
        session.commit()

        async def main() -> None:
            session.add(Row())
            with pytest.raises(AsyncReceiversInEventLoopError, match="callback"):
                on_commit(callback)
            session.rollback()

        asyncio.run(main())
    assert log == ["awaited"]


def test_on_commit_refuses_what_is_not_callable() -> None:
    """on_commit() of a non-callable raises InvalidReceiverError naming the value."""
    with pytest.raises(InvalidReceiverError, match="42"):
        on_commit(42)  # type: ignore[arg-type]


def test_two_sessions_open_in_one_context_is_an_error(sqlite_engine: Any) -> None:
    """Two Sessions open in one thread and no binding: a clear error naming both; an explicit
    session= or in_transaction() picks one."""
    log: list[str] = []
    first = Session(sqlite_engine)
    second = Session(sqlite_engine)
    try:
        first.add(Row())
        second.add(Row())
        with pytest.raises(AmbiguousSessionError) as raised:
            on_commit(functools.partial(log.append, "nowhere"))
        message = str(raised.value)
        assert f"{id(first):#x}" in message
        assert f"{id(second):#x}" in message
        assert "in_transaction" in message
        assert isinstance(raised.value, TidingsError)
        on_commit(functools.partial(log.append, "second"), session=second)
        with in_transaction(first):
            on_commit(functools.partial(log.append, "first"))
            with in_transaction(second):
                on_commit(functools.partial(log.append, "second again"))
            assert current_session() is first
        first.commit()
        assert log == ["first"]
        second.commit()
        assert log == ["first", "second", "second again"]
    finally:
        first.close()
        second.close()


def test_in_transaction_binds_a_session_begun_in_another_thread(
    sqlite_engine: Any, route: Via
) -> None:
    """A thread does not see a Session begun in another thread (its work, a callable or an
    on_commit receiver, runs at once), unless in_transaction() binds it; then the work waits
    for that Session's commit."""
    log: list[str] = []
    with Session(sqlite_engine) as session:
        session.add(Row())

        def worker() -> None:
            defer_work(route, functools.partial(log.append, "unbound"))
            with in_transaction(session):
                defer_work(route, functools.partial(log.append, "bound"))

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join(timeout=10)
        assert log == ["unbound"]
        session.commit()
    assert log == ["unbound", "bound"]


def test_in_transaction_refuses_what_is_not_a_session() -> None:
    """in_transaction() of something that is not a Session raises TypeError naming it."""
    with pytest.raises(TypeError, match="'nope'"), in_transaction("nope"):
        pass  # pragma: no cover - never entered


def test_two_sessions_in_two_threads_at_once(tmp_path: Any, route: Via) -> None:
    """Two threads, each with its own Session, register work (callables or on_commit receivers)
    in lockstep: each thread's work runs at its own commit, in its own thread, and a rollback
    drops only its own."""
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    Row.metadata.create_all(engine)
    barrier = threading.Barrier(2, timeout=10)
    ran: dict[str, list[tuple[str, str]]] = {"commit": [], "rollback": []}

    def work(outcome: str) -> None:
        with Session(engine) as session:
            session.add(Row(label=outcome))
            for step in range(20):
                barrier.wait()
                defer_work(
                    route,
                    functools.partial(
                        ran[outcome].append, (threading.current_thread().name, str(step))
                    ),
                )
            barrier.wait()
            if outcome == "commit":
                session.commit()
            else:
                session.rollback()

    outcomes = ["commit", "rollback"]
    try:
        run_threads([functools.partial(work, outcome) for outcome in outcomes], names=outcomes)
    finally:
        engine.dispose()
    assert ran == {"commit": [("commit", str(n)) for n in range(20)], "rollback": []}


def test_two_sessions_in_two_tasks_at_once(async_flavor: Flavor) -> None:
    """Two asyncio tasks, each with its own AsyncSession, interleave their work: each task's
    work runs at its own commit only, and the rolled-back task's never runs."""
    ran: dict[str, list[str]] = {"commit": [], "rollback": []}

    async def task(flavor: Flavor, outcome: str) -> None:
        async with flavor.session() as db:
            db.session.add(Row(label=outcome))
            await db.call("flush")
            for step in range(5):
                on_commit(functools.partial(ran[outcome].append, f"{outcome} {step}"))
                await asyncio.sleep(0)
            await db.call(outcome)

    async def scenario(flavor: Flavor) -> None:
        await asyncio.gather(task(flavor, "commit"), task(flavor, "rollback"))

    run_flavor(async_flavor, scenario)
    assert ran == {"commit": [f"commit {n}" for n in range(5)], "rollback": []}


def test_a_read_opens_a_transaction_so_later_work_waits_for_the_commit(
    sqlite_engine: Any,
) -> None:
    """After a commit, reading an expired attribute autobegins a transaction (SQLAlchemy), so
    work registered then waits for the next commit, where Django's autocommit would run it."""
    log: list[str] = []
    with Session(sqlite_engine) as session:
        row = Row(label="x")
        session.add(row)
        session.commit()
        assert not session.in_transaction()
        assert row.label == "x"
        assert session.in_transaction()
        on_commit(functools.partial(log.append, "after the read"))
        assert log == []
        session.commit()
    assert log == ["after the read"]


def test_a_session_joined_to_an_outer_transaction_runs_work_at_its_own_commit(
    sqlite_engine: Any,
) -> None:
    """A Session joined to a connection's transaction (join_transaction_mode) runs its work at
    its own commit, even though the outer transaction is rolled back afterwards."""
    log: list[str] = []
    with sqlite_engine.connect() as connection:
        outer = connection.begin()
        with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
            session.add(Row())
            on_commit(functools.partial(log.append, "ran"))
            session.commit()
            assert log == ["ran"]
            assert outer.is_active
        outer.rollback()
    assert log == ["ran"]


def test_work_deferred_during_a_flush_joins_the_flushing_session(sqlite_engine: Any) -> None:
    """A post_save receiver that defers work while another Session is open (and even bound)
    defers it to the Session whose flush sent the signal."""
    from tests.integrations.sqlalchemy.twins import build, declarative_base
    from tidings.apps import apps
    from tidings.models import post_save
    from tidings.sqlalchemy import instrument

    log: list[str] = []

    def receiver(instance: Any, **kwargs: Any) -> None:
        on_commit(functools.partial(log.append, instance.name))

    with apps.isolated():
        base = declarative_base()
        instrument(base)
        m = build(base)
        m.Base.metadata.create_all(sqlite_engine)
        post_save.connect(receiver, sender=m.User)
        flushing = Session(sqlite_engine)
        other = Session(sqlite_engine)
        try:
            other.add(m.Book())
            flushing.add(m.User(name="ada"))
            with in_transaction(other):
                flushing.flush()
            other.commit()
            assert log == []
            flushing.commit()
            assert log == ["ada"]
        finally:
            post_save.disconnect(receiver, sender=m.User)
            flushing.close()
            other.close()
            m.Base.metadata.drop_all(sqlite_engine)
