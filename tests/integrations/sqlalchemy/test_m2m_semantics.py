"""When and with what ``m2m_changed`` is sent for SQLAlchemy, including where Django differs."""

from __future__ import annotations

import functools
import gc
import threading
import weakref
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import create_engine, func, inspect, select
from sqlalchemy.orm import (
    Session,
)
from sqlalchemy.pool import StaticPool

from tests.core._support import run_threads
from tests.integrations.sqlalchemy.m2m_models import m2m_entry
from tests.oracle.m2m.harness import Scenario, build_world, fresh_models, run_django
from tidings.models import m2m_changed
from tidings.sqlalchemy import _m2m_record

Log = list[tuple[Any, ...]]


class Db(SimpleNamespace):
    """A sync SQLite session over the twins, their objects (``a1``, ``b1``…) and a log."""

    session: Session
    log: Log

    def links(self) -> list[tuple[int, int]]:
        """The rows of ``m2m_book_authors``, read through the session's connection."""
        rows = self.session.connection().execute(select(self.models.book_authors))
        return sorted((book, author) for book, author in rows)


@pytest.fixture
def db() -> Iterator[Db]:
    """Twins on SQLite with every object saved, and a receiver logging m2m_changed."""
    models = fresh_models()
    engine = create_engine("sqlite://", poolclass=StaticPool)
    models.Base.metadata.create_all(engine)
    log: Log = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        log.append(m2m_entry(sender, **kwargs))

    with Session(engine) as session:
        world = build_world(models, session)
        session.flush()
        m2m_changed.connect(receiver)
        try:
            yield Db(log=log, **vars(world))
        finally:
            m2m_changed.disconnect(receiver)
            session.rollback()
    engine.dispose()


def _django(*steps: Any, setup: Any = ()) -> Log:
    """Django's log for ``steps``, as (action, instance class, pk, pk_set) per send."""
    scenario = Scenario("oracle", django=list(steps), sqla=[], setup=list(setup))
    return [(e[0], e[2], e[3], e[6]) for step in run_django(scenario) for e in step]


# -- Where Django sends more: pinned divergences ----------------------------------------------


def test_adding_a_linked_object_again_sends_nothing(db: Db) -> None:
    """Re-adding a linked object changes nothing, so nothing is sent (Django: empty pk_set)."""
    db.art1.topics.add(db.t1)
    db.session.flush()
    db.log.clear()
    db.art1.topics.add(db.t1)
    db.session.flush()
    assert db.log == []
    assert _django(lambda w: w.art1.topics.add(w.t1), setup=[("art1", "topics", ("t1",))]) == [
        ("pre_add", "Article", 1, []),
        ("post_add", "Article", 1, []),
    ]


def test_removing_an_unlinked_object_sends_nothing(db: Db) -> None:
    """Discarding an object that is not linked sends nothing (Django: its pk in pk_set)."""
    db.art1.topics.discard(db.t2)
    db.session.flush()
    assert db.log == []
    assert _django(lambda w: w.art1.topics.remove(w.t2)) == [
        ("pre_remove", "Article", 1, [2]),
        ("post_remove", "Article", 1, [2]),
    ]


def test_clearing_an_empty_collection_sends_nothing(db: Db) -> None:
    """clear() on an empty collection sends nothing (Django: the clear pair)."""
    db.b1.authors.clear()
    db.session.flush()
    assert db.log == []
    assert _django(lambda w: w.b1.authors.clear()) == [
        ("pre_clear", "Book", 1, None),
        ("post_clear", "Book", 1, None),
    ]


def test_changes_undone_before_the_flush_send_nothing(db: Db) -> None:
    """An append undone before the flush, and a clear of unflushed appends, send nothing."""
    db.b1.authors.append(db.a1)
    db.b1.authors.remove(db.a1)
    db.b2.authors.extend([db.a2, db.a3])
    db.b2.authors.clear()
    db.session.flush()
    assert db.log == []
    assert db.links() == []


def test_operations_of_one_collection_are_netted_per_flush(db: Db) -> None:
    """Several appends to one collection before a flush give one pair with all the pks."""
    db.b1.authors.append(db.a1)
    db.b1.authors.append(db.a2)
    db.session.flush()
    assert db.log == [("pre_add", "Book", 1, [1, 2]), ("post_add", "Book", 1, [1, 2])]


def test_deleting_the_instance_drops_its_pending_changes(db: Db) -> None:
    """Changes to the collection of an object deleted in the same flush send nothing."""
    db.b1.authors.append(db.a1)
    db.session.flush()
    db.log.clear()
    db.b1.authors.remove(db.a1)
    db.session.delete(db.b1)
    db.session.flush()
    assert db.log == []
    assert db.links() == []
    assert inspect(db.b1) not in _m2m_record._logs


# -- Timing ------------------------------------------------------------------------------------


def test_pre_runs_before_the_rows_are_written_and_post_after(db: Db) -> None:
    """pre_add sees the association table without the row, post_add sees it."""
    seen: list[tuple[str, list[tuple[int, int]]]] = []

    def receiver(sender: Any, action: str, **kwargs: Any) -> None:
        seen.append((action, db.links()))

    m2m_changed.connect(receiver)
    try:
        db.b1.authors.append(db.a2)
        db.session.flush()
    finally:
        m2m_changed.disconnect(receiver)
    assert seen == [("pre_add", []), ("post_add", [(1, 2)])]


def test_pre_waits_for_primary_keys_of_new_objects(db: Db) -> None:
    """Linking a new object sends pre_add after its INSERT, with its generated primary key."""
    seen: list[tuple[str, Any, list[tuple[int, int]]]] = []

    def receiver(sender: Any, action: str, pk_set: Any, **kwargs: Any) -> None:
        seen.append((action, set(pk_set), db.links()))

    m2m_changed.connect(receiver)
    try:
        author = db.models.Author(name="new")
        db.b1.authors.append(author)
        db.session.flush()
    finally:
        m2m_changed.disconnect(receiver)
    assert author.id is not None
    assert seen == [
        ("pre_add", {author.id}, [(1, author.id)]),
        ("post_add", {author.id}, [(1, author.id)]),
    ]


def test_a_query_autoflushes_what_was_changed_so_far(db: Db) -> None:
    """Autoflush sends the signals of the changes made before the query, at the query."""
    db.b1.authors.append(db.a1)
    db.session.scalar(select(func.count()).select_from(db.models.Author))
    assert [entry[0] for entry in db.log] == ["pre_add", "post_add"]
    db.b1.authors.append(db.a2)
    db.session.flush()
    assert db.log[2:] == [("pre_add", "Book", 1, [2]), ("post_add", "Book", 1, [2])]


# -- Receivers acting on the session -----------------------------------------------------------


def test_pre_receiver_exception_aborts_the_flush(db: Db) -> None:
    """An exception in a pre_add receiver propagates from flush() and no row is written."""

    class Refused(Exception):
        pass

    def receiver(sender: Any, action: str, **kwargs: Any) -> None:
        if action == "pre_add":
            raise Refused(action)

    m2m_changed.connect(receiver)
    try:
        db.b1.authors.append(db.a1)
        with pytest.raises(Refused):
            db.session.flush()
    finally:
        m2m_changed.disconnect(receiver)
    db.session.rollback()
    assert db.links() == []
    assert [entry[0] for entry in db.log] == ["pre_add"]
    # The rollback evicted the (unsaved) book: what it recorded is forgotten with it.
    assert inspect(db.b1).transient
    assert inspect(db.b1) not in _m2m_record._logs


def test_post_receiver_changes_are_flushed_and_signalled(db: Db) -> None:
    """A collection change made by a post_add receiver is written and signalled at once."""

    def receiver(sender: Any, action: str, instance: Any, **kwargs: Any) -> None:
        if action == "post_add" and instance is db.b1 and db.a3 not in db.b1.authors:
            db.b1.authors.append(db.a3)

    m2m_changed.connect(receiver)
    try:
        db.b1.authors.append(db.a1)
        db.session.flush()
    finally:
        m2m_changed.disconnect(receiver)
    assert db.links() == [(1, 1), (1, 3)]
    assert db.log == [
        ("pre_add", "Book", 1, [1]),
        ("post_add", "Book", 1, [1]),
        ("pre_add", "Book", 1, [3]),
        ("post_add", "Book", 1, [3]),
    ]


def test_pre_receiver_changes_join_the_same_flush(db: Db) -> None:
    """A change made by a pre_add receiver is written by the same flush and signalled."""

    def receiver(sender: Any, action: str, instance: Any, **kwargs: Any) -> None:
        if action == "pre_add" and instance is db.b1:
            db.b2.authors.append(db.a2)

    m2m_changed.connect(receiver)
    try:
        db.b1.authors.append(db.a1)
        db.session.flush()
    finally:
        m2m_changed.disconnect(receiver)
    assert db.links() == [(1, 1), (2, 2)]
    assert sorted(db.log) == sorted(
        [
            ("pre_add", "Book", 1, [1]),
            ("pre_add", "Book", 2, [2]),
            ("post_add", "Book", 1, [1]),
            ("post_add", "Book", 2, [2]),
        ]
    )


def test_rollback_forgets_recorded_operations(db: Db) -> None:
    """After a rollback, an earlier clear() no longer turns a removal into a clear."""
    db.b1.authors.extend([db.a1, db.a2])
    db.session.commit()
    db.b1.authors.clear()
    db.session.rollback()
    db.log.clear()
    db.b1.authors.remove(db.a1)
    db.session.flush()
    assert db.log == [("pre_remove", "Book", 1, [1]), ("post_remove", "Book", 1, [1])]


# -- Senders, receivers, cost ------------------------------------------------------------------


def test_sender_is_the_table_or_the_association_class(db: Db) -> None:
    """The sender is the association Table, or the class mapped to it (Membership)."""
    senders: list[Any] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        senders.append(sender)

    m2m_changed.connect(receiver)
    try:
        db.b1.authors.append(db.a1)
        db.g1.members.append(db.m1)
        db.session.flush()
    finally:
        m2m_changed.disconnect(receiver)
    assert senders == [db.models.book_authors, db.models.Membership] * 2


def test_receivers_filtered_by_sender(db: Db) -> None:
    """A receiver connected for one association table only hears that table's changes."""
    heard: Log = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        heard.append(m2m_entry(sender, **kwargs))

    m2m_changed.connect(receiver, sender=db.models.article_topics)
    try:
        db.b1.authors.append(db.a1)
        db.art1.topics.add(db.t3)
        db.session.flush()
    finally:
        m2m_changed.disconnect(receiver, sender=db.models.article_topics)
    assert heard == [("pre_add", "Article", 1, [3]), ("post_add", "Article", 1, [3])]


def test_nothing_is_recorded_without_receivers() -> None:
    """With no receiver for the sender, collection changes record nothing at all."""
    models = fresh_models()
    engine = create_engine("sqlite://")
    models.Base.metadata.create_all(engine)

    def other(sender: Any, **kwargs: Any) -> None:
        raise AssertionError("not this sender")

    m2m_changed.connect(other, sender=models.article_topics)
    try:
        with Session(engine) as session:
            world = build_world(models, session)
            world.b1.authors.extend([world.a1, world.a2])
            world.a3.books.append(world.b2)
            states = [inspect(obj) for obj in (world.b1, world.a3)]
            assert [state in _m2m_record._logs for state in states] == [False, False]
            session.flush()
    finally:
        m2m_changed.disconnect(other, sender=models.article_topics)
    engine.dispose()


def test_using_comes_from_the_engine_option(db: Db) -> None:
    """``using`` is the engine's ``tidings_using`` execution option (default "default")."""
    engine = create_engine("sqlite://", poolclass=StaticPool).execution_options(
        tidings_using="replica"
    )
    db.models.Base.metadata.create_all(engine)
    usings: list[str] = []

    def receiver(sender: Any, using: str, **kwargs: Any) -> None:
        usings.append(using)

    m2m_changed.connect(receiver)
    try:
        with Session(engine) as session:
            book, author = db.models.Book(id=1), db.models.Author(id=1)
            book.authors.append(author)
            session.add(book)
            session.flush()
    finally:
        m2m_changed.disconnect(receiver)
    engine.dispose()
    assert usings == ["replica", "replica"]


def test_sessions_in_threads_do_not_mix(db: Db) -> None:
    """Sessions flushing in parallel threads each get exactly their own signals."""
    models = db.models
    threads_count, rounds = 4, 20
    barrier = threading.Barrier(threads_count)
    heard: dict[int, Log] = {n: [] for n in range(threads_count)}
    owner: dict[int, int] = {}

    def receiver(sender: Any, instance: Any, action: str, pk_set: Any, **kwargs: Any) -> None:
        if isinstance(instance, models.Book) and instance.id in owner:
            heard[owner[instance.id]].append((action, sorted(pk_set)))

    def work(n: int) -> None:
        engine = create_engine("sqlite://", poolclass=StaticPool)
        models.Base.metadata.create_all(engine)
        with Session(engine) as session:
            book = models.Book(id=100 + n)
            owner[book.id] = n
            authors = [models.Author(id=i) for i in range(1, rounds + 1)]
            session.add_all([book, *authors])
            session.flush()
            barrier.wait(timeout=10)
            for author in authors:
                book.authors.append(author)
                session.flush()
        engine.dispose()

    m2m_changed.connect(receiver)
    try:
        run_threads([functools.partial(work, n) for n in range(threads_count)])
    finally:
        m2m_changed.disconnect(receiver)
    expected = [(action, [i]) for i in range(1, rounds + 1) for action in ("pre_add", "post_add")]
    assert heard == dict.fromkeys(range(threads_count), expected)


def test_unflushed_changes_do_not_keep_objects_alive(db: Db) -> None:
    """Objects changed but never flushed, even linked to themselves, are garbage collected."""
    person, other = db.models.Person(id=10), db.models.Person(id=11)
    person.following.extend([person, other])
    other.followers.append(other)
    states = weakref.WeakSet([inspect(person), inspect(other)])
    assert all(state in _m2m_record._logs for state in states)
    del person, other
    gc.collect()
    assert len(states) == 0


def test_del_and_pop_remove(db: Db) -> None:
    """``del collection[i]`` and ``pop()`` send the remove pair, not the clear pair."""
    db.b1.authors.extend([db.a1, db.a2])
    db.session.flush()
    db.log.clear()
    del db.b1.authors[0]
    db.session.flush()
    db.b1.authors.pop()
    db.session.flush()
    assert db.log == [
        ("pre_remove", "Book", 1, [1]),
        ("post_remove", "Book", 1, [1]),
        ("pre_remove", "Book", 1, [2]),
        ("post_remove", "Book", 1, [2]),
    ]


def test_linking_a_new_object_follows_its_save_signals(db: Db) -> None:
    """A new target gets pre_save/post_save, then the add pair: Django's manager.create()."""
    from django.db.models import signals as django_signals

    from tidings.models import post_save, pre_save

    def record(log: Log, name: str) -> Any:
        def receiver(sender: Any, **kwargs: Any) -> None:
            log.append((name, "through" if name == "m2m" else sender.__name__))

        return receiver

    ours: Log = []
    receivers = [
        (signal, record(ours, name))
        for name, signal in (("pre_save", pre_save), ("post_save", post_save), ("m2m", m2m_changed))
    ]
    for signal, receiver in receivers:
        signal.connect(receiver)
    try:
        db.b1.authors.append(db.models.Author(id=9))
        db.session.flush()
    finally:
        for signal, receiver in receivers:
            signal.disconnect(receiver)

    theirs: Log = []
    oracle = [
        (signal, record(theirs, name))
        for name, signal in (
            ("pre_save", django_signals.pre_save),
            ("post_save", django_signals.post_save),
            ("m2m", django_signals.m2m_changed),
        )
    ]

    def create(w: Any) -> None:
        for signal, receiver in oracle:
            signal.connect(receiver)
        try:
            w.b1.authors.create(id=9)
        finally:
            for signal, receiver in oracle:
                signal.disconnect(receiver)

    _django(create)
    expected = [
        ("pre_save", "Author"),
        ("post_save", "Author"),
        ("m2m", "through"),
        ("m2m", "through"),
    ]
    assert ours == theirs == expected


def test_expiring_forgets_recorded_operations(db: Db) -> None:
    """Expiring every object discards unflushed changes, and what was recorded for them."""
    db.b1.authors.extend([db.a1, db.a2])
    db.session.flush()
    db.b1.authors.clear()
    db.session.expire_all()
    db.log.clear()
    db.b1.authors.remove(db.a1)
    db.session.flush()
    assert db.log == [("pre_remove", "Book", 1, [1]), ("post_remove", "Book", 1, [1])]
