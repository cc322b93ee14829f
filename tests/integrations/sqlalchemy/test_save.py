"""Save and delete signals: what tidings adds to Django's arguments and where SQLAlchemy differs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import ForeignKey, create_engine, event, select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship
from sqlalchemy.pool import StaticPool

import tidings.models as tm
from tests.integrations.sqlalchemy.twins import build, declarative_base
from tidings import TidingsError
from tidings.sqlalchemy import DEFERRED, UpdateFieldsError, asave, instrument, save


class Log:
    """Connects one receiver to the given signals and keeps (name, sender, kwargs)."""

    def __init__(self, *signals: Any) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.signals = signals
        for signal in signals:
            signal.connect(self.receive)

    def receive(self, signal: Any, sender: Any, **kwargs: Any) -> None:
        """Record one send."""
        self.calls.append((signal.name, sender.__name__, kwargs))

    def close(self) -> None:
        """Disconnect from every signal."""
        for signal in self.signals:
            signal.disconnect(self.receive)


@pytest.fixture
def m() -> Any:
    """Fresh instrumented twin models."""
    base = declarative_base()
    instrument(base)
    return build(base)


@pytest.fixture
def session(m: Any) -> Iterator[Session]:
    """A Session on a new SQLite database with the twin tables."""
    engine = create_engine("sqlite://", poolclass=StaticPool)
    m.Base.metadata.create_all(engine)
    with Session(engine) as session:
        yield session
    engine.dispose()


@pytest.fixture
def log() -> Iterator[Log]:
    """A log of the four save/delete signals."""
    log = Log(tm.pre_save, tm.post_save, tm.pre_delete, tm.post_delete)
    yield log
    log.close()


def test_changes_are_old_new_pairs_and_empty_for_inserts(
    m: Any, session: Session, log: Log
) -> None:
    """pre_save/post_save carry changes: {} for an insert, {field: (old, new)} for an update."""
    person = m.Person(first_name="Ada")
    session.add(person)
    session.flush()
    person.first_name = "Grace"
    session.flush()
    assert [(name, kw["changes"]) for name, _, kw in log.calls] == [
        ("pre_save", {}),
        ("post_save", {}),
        ("pre_save", {"first_name": ("Ada", "Grace")}),
        ("post_save", {"first_name": ("Ada", "Grace")}),
    ]


def test_pre_save_receivers_may_change_the_instance(m: Any, session: Session) -> None:
    """A change made by a pre_save receiver is written and shows in post_save's changes."""

    def shout(instance: Any, **kwargs: Any) -> None:
        instance.last_name = instance.first_name.upper()

    seen: list[Any] = []

    def after(changes: Any, **kwargs: Any) -> None:
        seen.append(changes)

    tm.pre_save.connect(shout, sender=m.Person)
    tm.post_save.connect(after, sender=m.Person)
    try:
        person = m.Person(first_name="Ada")
        session.add(person)
        session.flush()
        person.first_name = "Grace"
        session.flush()
    finally:
        tm.pre_save.disconnect(shout, sender=m.Person)
        tm.post_save.disconnect(after, sender=m.Person)
    session.expire_all()
    assert session.scalars(select(m.Person.last_name)).one() == "GRACE"
    assert seen[1] == {"first_name": ("Ada", "Grace"), "last_name": ("ADA", "GRACE")}


def test_unchanged_and_collection_only_changes_send_no_save(
    m: Any, session: Session, log: Log
) -> None:
    """Setting a value to itself, or changing only a collection, sends no save for that object."""
    book = m.Book(title="Emma", pages=[])
    session.add(book)
    session.flush()
    log.calls.clear()
    book.title = "Emma"
    session.flush()
    assert log.calls == []
    page = m.Page()
    book.pages.append(page)
    session.add(page)
    session.flush()
    assert [(name, sender) for name, sender, _ in log.calls] == [
        ("pre_save", "Page"),
        ("post_save", "Page"),
    ]


def test_update_fields_are_validated_before_any_signal(m: Any, session: Session, log: Log) -> None:
    """Unknown, collection or primary-key names, or update_fields on a new object: ValueError."""
    person = m.Person(first_name="Ada")
    with pytest.raises(ValueError, match="new Person"):
        save(session, person, update_fields=["first_name"])
    save(session, person)
    book = m.Book(title="Emma")
    save(session, book)
    log.calls.clear()
    with pytest.raises(ValueError, match="nope"):
        save(session, person, update_fields=["first_name", "nope"])
    with pytest.raises(ValueError, match="id"):
        save(session, person, update_fields=["id"])
    with pytest.raises(ValueError, match="pages"):
        save(session, book, update_fields=["pages"])
    assert log.calls == []


def test_update_fields_given_as_a_bare_string_is_refused(
    m: Any, session: Session, log: Log
) -> None:
    """save(update_fields="title") would read the letters as names: refused, before any signal."""
    book = m.Book(title="Emma")
    save(session, book)
    log.calls.clear()
    with pytest.raises(UpdateFieldsError, match=r"update_fields=\['title'\]") as caught:
        save(session, book, update_fields="title")
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, TidingsError)

    async def main() -> None:
        engine = create_async_engine("sqlite+aiosqlite://", poolclass=StaticPool)
        async with engine.begin() as connection:
            await connection.run_sync(m.Base.metadata.create_all)
        async with AsyncSession(engine) as async_session:
            other = m.Book(title="Persuasion")
            await asave(async_session, other)
            log.calls.clear()
            with pytest.raises(UpdateFieldsError, match="not the string 'title'"):
                await asave(async_session, other, update_fields="title")
        await engine.dispose()

    asyncio.run(main())
    assert log.calls == []


def test_save_without_flush_waits_for_the_next_flush(m: Any, session: Session, log: Log) -> None:
    """save(flush=False) marks the object; the next flush sends the pair with update_fields."""
    person = m.Person(first_name="Ada")
    save(session, person)
    log.calls.clear()
    save(session, person, update_fields={"last_name"}, flush=False)
    assert log.calls == []
    session.flush()
    assert [kw["update_fields"] for _, _, kw in log.calls] == [frozenset({"last_name"})] * 2


def test_using_is_the_engine_tidings_using_option(m: Any, log: Log) -> None:
    """using is the bind's "tidings_using" execution option, "default" without it."""
    engine = create_engine(
        "sqlite://", poolclass=StaticPool, execution_options={"tidings_using": "replica"}
    )
    m.Base.metadata.create_all(engine)
    with Session(engine) as session:
        person = m.Person(first_name="Ada")
        session.add(person)
        session.flush()
        session.delete(person)
        session.flush()
    engine.dispose()
    assert {kw["using"] for _, _, kw in log.calls} == {"replica"}


def test_post_save_is_sent_before_commit_and_kept_on_rollback(
    m: Any, session: Session, log: Log
) -> None:
    """Signals are not transactional: a rollback after the flush does not undo post_save."""
    session.add(m.Person(first_name="Ada"))
    session.flush()
    session.rollback()
    assert [name for name, _, _ in log.calls] == ["pre_save", "post_save"]
    assert session.scalars(select(m.Person)).all() == []


def test_receivers_that_save_forever_are_stopped(m: Any, session: Session) -> None:
    """A post_save receiver that changes its instance on every save hits a clear RuntimeError."""

    def again(instance: Any, **kwargs: Any) -> None:
        instance.last_name += "x"

    tm.post_save.connect(again, sender=m.Person)
    try:
        session.add(m.Person(first_name="Ada"))
        with pytest.raises(RuntimeError, match="post_save/post_delete receivers kept changing"):
            session.flush()
    finally:
        tm.post_save.disconnect(again, sender=m.Person)


def test_refresh_and_expired_reload_send_no_init(m: Any, session: Session) -> None:
    """Reloading an existing instance (refresh, expired attributes) sends no init signals."""
    person = m.Person(first_name="Ada")
    session.add(person)
    session.commit()
    log = Log(tm.pre_init, tm.post_init)
    try:
        assert person.first_name == "Ada"
        session.refresh(person)
    finally:
        log.close()
    assert log.calls == []


def test_deferred_columns_are_deferred_in_pre_init_args(m: Any, session: Session) -> None:
    """A column not loaded (defer) appears as DEFERRED in pre_init's args."""
    from sqlalchemy.orm import defer

    session.add(m.Book(title="Emma"))
    session.commit()
    session.expunge_all()
    log = Log(tm.pre_init)
    try:
        session.scalars(select(m.Book).options(defer(m.Book.title))).one()
    finally:
        log.close()
    assert log.calls[0][2]["args"] == (1, DEFERRED)


def test_bulk_statements_send_no_per_object_signals(m: Any, session: Session, log: Log) -> None:
    """ORM update()/delete() statements send no save/delete signals (like QuerySet.update)."""
    from sqlalchemy import delete, update

    session.add(m.Person(first_name="Ada"))
    session.flush()
    log.calls.clear()
    session.execute(update(m.Person).values(last_name="L"))
    session.execute(delete(m.Person))
    assert log.calls == []


def test_objects_deleted_by_a_pre_delete_receiver_are_signalled_too(
    m: Any, session: Session, log: Log
) -> None:
    """Deletions made by a pre_delete receiver join the flush and get their own signals."""
    book = m.Book(title="Emma")
    review = m.Review(book=book)
    session.add_all([book, review])
    session.flush()

    def cleanup(instance: Any, **kwargs: Any) -> None:
        session.delete(review)

    tm.pre_delete.connect(cleanup, sender=m.Book)
    try:
        log.calls.clear()
        session.delete(book)
        session.flush()
    finally:
        tm.pre_delete.disconnect(cleanup, sender=m.Book)
    assert [(name, sender) for name, sender, _ in log.calls] == [
        ("pre_delete", "Book"),
        ("pre_delete", "Review"),
        ("post_delete", "Book"),
        ("post_delete", "Review"),
    ]
    assert session.scalars(select(m.Review)).all() == []


def test_init_receivers_connected_between_queries_see_later_loads(m: Any, session: Session) -> None:
    """Load signals follow receivers connected after earlier queries, and stop once they go."""
    session.add_all([m.Book(title="Emma"), m.Book(title="Persuasion")])
    session.commit()
    session.expunge_all()
    session.get(m.Book, 1)  # a load with nobody listening
    log = Log(tm.post_init)
    try:
        session.get(m.Book, 2)
    finally:
        log.close()
    session.expunge_all()
    session.scalars(select(m.Book)).all()
    assert [(name, sender) for name, sender, _ in log.calls] == [("post_init", "Book")]


def test_insert_statements_and_legacy_bulk_methods_send_nothing(
    m: Any, session: Session, log: Log
) -> None:
    """insert() statements and bulk_save_objects() bypass the unit of work: no signals."""
    from sqlalchemy import insert

    bulk_log = Log(tm.post_bulk_update, tm.post_bulk_delete)
    try:
        session.execute(insert(m.Person), [{"first_name": "Ada"}, {"first_name": "Bob"}])
        session.bulk_save_objects([m.Person(first_name="Cy")])
    finally:
        bulk_log.close()
    assert log.calls == []
    assert bulk_log.calls == []
    assert len(session.scalars(select(m.Person)).all()) == 3


def test_database_cascades_of_passive_deletes_are_not_signalled(log: Log) -> None:
    """Children removed by ON DELETE CASCADE with passive_deletes get no delete signals."""
    base = declarative_base()
    instrument(base)

    class Album(base):  # type: ignore[misc,valid-type]
        __tablename__ = "album"
        id: Mapped[int] = mapped_column(primary_key=True)
        tracks: Mapped[list[Track]] = relationship(
            cascade="all, delete-orphan", passive_deletes=True
        )

    class Track(base):  # type: ignore[misc,valid-type]
        __tablename__ = "track"
        id: Mapped[int] = mapped_column(primary_key=True)
        album_id: Mapped[int] = mapped_column(ForeignKey("album.id", ondelete="CASCADE"))

    engine = create_engine("sqlite://", poolclass=StaticPool)

    @event.listens_for(engine, "connect")
    def foreign_keys(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA foreign_keys=ON")

    base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Album(id=1, tracks=[Track(id=1), Track(id=2)]))
        session.commit()
        session.expunge_all()
        log.calls.clear()
        session.delete(session.get(Album, 1))
        session.commit()
        assert session.scalars(select(Track)).all() == []
    engine.dispose()
    assert [(name, sender) for name, sender, _ in log.calls] == [
        ("pre_delete", "Album"),
        ("post_delete", "Album"),
    ]


def test_child_added_by_foreign_key_value_is_saved(m: Any, session: Session, log: Log) -> None:
    """A child linked by setting its foreign-key column (no parent object) gets its save pair."""
    session.add(m.Book(id=1))
    session.flush()
    log.calls.clear()
    session.add(m.Page(book_id=1))
    session.flush()
    assert [(name, sender) for name, sender, _ in log.calls] == [
        ("pre_save", "Page"),
        ("post_save", "Page"),
    ]


def test_child_detached_before_its_first_flush_is_not_saved(
    m: Any, session: Session, log: Log
) -> None:
    """A new child removed from its delete-orphan parent before any flush is never inserted,
    and gets no save signals."""
    book = m.Book(pages=[])
    session.add(book)
    session.flush()
    page = m.Page()
    book.pages.append(page)
    session.add(page)
    book.pages.remove(page)
    log.calls.clear()
    session.flush()
    assert log.calls == []
    assert session.scalars(select(m.Page)).all() == []


def test_deleting_rows_of_mutually_dependent_tables_orders_without_warning(log: Log) -> None:
    """Tables that reference each other (a foreign-key cycle) still get a delete order."""
    base = declarative_base()
    instrument(base)

    class Team(base):  # type: ignore[misc,valid-type]
        __tablename__ = "team"
        id: Mapped[int] = mapped_column(primary_key=True)
        captain_id: Mapped[int | None] = mapped_column(ForeignKey("player.id", use_alter=True))

    class Player(base):  # type: ignore[misc,valid-type]
        __tablename__ = "player"
        id: Mapped[int] = mapped_column(primary_key=True)
        team_id: Mapped[int] = mapped_column(ForeignKey("team.id"))

    engine = create_engine("sqlite://", poolclass=StaticPool)
    base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Team(id=1))
        session.flush()
        session.add_all([Player(id=1, team_id=1), Player(id=2, team_id=1)])
        session.flush()
        objs = [*session.scalars(select(Player)).all(), session.get(Team, 1)]
        log.calls.clear()
        for obj in objs:
            session.delete(obj)
        session.flush()
    engine.dispose()
    assert [(name, sender) for name, sender, _ in log.calls] == [
        ("pre_delete", "Player"),
        ("pre_delete", "Player"),
        ("pre_delete", "Team"),
        ("post_delete", "Player"),
        ("post_delete", "Player"),
        ("post_delete", "Team"),
    ]


def test_each_root_deleted_in_one_flush_is_the_origin_of_its_cascade(
    m: Any, session: Session, log: Log
) -> None:
    """Two books deleted in one flush: each page's origin is its own book."""
    books = [m.Book(title=title, pages=[m.Page(), m.Page()]) for title in ("a", "b")]
    session.add_all(books)
    session.flush()
    log.calls.clear()
    for book in books:
        session.delete(book)
    session.flush()
    origins = {
        (sender, kw["instance"].id): (type(kw["origin"]).__name__, kw["origin"].id)
        for name, sender, kw in log.calls
        if name == "pre_delete"
    }
    assert origins == {
        ("Page", 1): ("Book", 1),
        ("Page", 2): ("Book", 1),
        ("Page", 3): ("Book", 2),
        ("Page", 4): ("Book", 2),
        ("Book", 1): ("Book", 1),
        ("Book", 2): ("Book", 2),
    }


def test_save_called_from_a_receiver_is_written_by_the_same_flush(
    m: Any, session: Session, log: Log
) -> None:
    """save() inside a post_save receiver (Django's Profile.objects.create) does not flush
    re-entrantly; the Profile is written before the outer flush() returns."""

    def create_profile(instance: Any, created: bool, **kwargs: Any) -> None:
        if created:
            save(session, m.Profile(user=instance))

    tm.post_save.connect(create_profile, sender=m.User)
    try:
        session.add(m.User(name="ada"))
        session.flush()
    finally:
        tm.post_save.disconnect(create_profile, sender=m.User)
    assert not session.new
    assert [(name, sender) for name, sender, _ in log.calls] == [
        ("pre_save", "User"),
        ("post_save", "User"),
        ("pre_save", "Profile"),
        ("post_save", "Profile"),
    ]


def test_save_called_from_a_pre_save_receiver_joins_the_flush(
    m: Any, session: Session, log: Log
) -> None:
    """save() of an unchanged object inside a pre_save receiver signals it in the same flush."""
    author = m.Person(first_name="Ada")
    session.add(author)
    session.flush()

    def touch_author(**kwargs: Any) -> None:
        save(session, author, update_fields=["first_name"])

    tm.pre_save.connect(touch_author, sender=m.Book)
    try:
        log.calls.clear()
        session.add(m.Book(title="Emma"))
        session.flush()
    finally:
        tm.pre_save.disconnect(touch_author, sender=m.Book)
    assert [(name, sender, kw["update_fields"]) for name, sender, kw in log.calls] == [
        ("pre_save", "Book", None),
        ("pre_save", "Person", frozenset({"first_name"})),
        ("post_save", "Book", None),
        ("post_save", "Person", frozenset({"first_name"})),
    ]
