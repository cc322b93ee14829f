"""One-to-one relationships: only the row that is written is saved, and flush hooks never load.

The twins ``User``/``Profile`` are the classic tutorial's: Django's ``Profile.user`` is a
``OneToOneField``; SQLAlchemy's ``User.profile`` is the reverse side (``uselist=False``,
``cascade="all, delete-orphan"``). Assigning ``user.profile`` writes the profile's row, never
the user's, so only the profile is saved, as in Django. Every test runs with warnings as
errors: a load inside the flush shows up as SQLAlchemy's "Identity map already had an
identity" warning.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any, Optional

import pytest
from sqlalchemy import ForeignKey, String, create_engine, event, select
from sqlalchemy.orm import Mapped, Session, mapped_column, object_session, relationship
from sqlalchemy.pool import StaticPool

import tidings.models as tm
from tests.integrations.sqlalchemy.conftest import SAVE_DELETE, Db, DjangoSide, SqlaSide
from tests.integrations.sqlalchemy.twins import declarative_base
from tidings.sqlalchemy import instrument, save


def _session_of(instance: Any) -> Session:
    session = object_session(instance)
    assert session is not None
    return session


def test_assigning_the_reverse_side_saves_only_the_profile(
    django_side: DjangoSide, sqla: SqlaSide
) -> None:
    """``user.profile = Profile()`` sends the profile's save pair and nothing for the user."""

    def django(m: Any) -> None:
        user = m.User.objects.create(name="ada")
        user.profile = m.Profile()
        user.profile.save()
        user.name = "grace"
        user.save()

    async def sqlalchemy(db: Db) -> None:
        user = db.models.User(name="ada")
        db.add(user)
        await db.flush()
        user.profile = db.models.Profile()
        await db.flush()
        user.name = "grace"
        await db.flush()
        profiles = await db.scalars(select(db.models.Profile.user_id))
        assert profiles == [1]

    expected = django_side.run(django, SAVE_DELETE)
    assert [(e[0], e[1], e[3].get("created")) for e in expected] == [
        ("pre_save", "User", None),
        ("post_save", "User", True),
        ("pre_save", "Profile", None),
        ("post_save", "Profile", True),
        ("pre_save", "User", None),
        ("post_save", "User", False),
    ]
    assert sqla.run(sqlalchemy) == expected


def test_profile_added_by_foreign_key_value_after_removing_the_first(
    django_side: DjangoSide, sqla: SqlaSide
) -> None:
    """Removing a profile deletes it; a new Profile(user_id=...) added directly is inserted
    and saved, although it is not attached through the delete-orphan relationship."""

    def django(m: Any) -> None:
        user = m.User.objects.create(name="ada")
        m.Profile.objects.create(user=user)
        m.User.objects.get(pk=user.pk).profile.delete()
        m.Profile.objects.create(user_id=user.pk)
        assert m.Profile.objects.get().user_id == user.pk

    async def sqlalchemy(db: Db) -> None:
        m = db.models
        db.add(m.User(name="ada", profile=m.Profile()))
        await db.flush()
        db.forget()
        user = await db.get(m.User, 1)  # its profile is not loaded
        user.profile = None
        await db.flush()
        assert await db.scalars(select(m.Profile)) == []
        db.add(m.Profile(user_id=user.id))
        await db.flush()
        assert await db.scalars(select(m.Profile.user_id)) == [1]

    expected = django_side.run(django, SAVE_DELETE)
    assert [(e[0], e[1], e[2]) for e in expected[-4:]] == [
        ("pre_delete", "Profile", 1),
        ("post_delete", "Profile", 1),
        ("pre_save", "Profile", None),
        ("post_save", "Profile", 2),
    ]
    got = sqla.run(sqlalchemy)
    # Django's create() of a user and its profile is two saves; SQLAlchemy's constructor
    # with profile=... is one flush: all pre_save, then all post_save.
    assert got[:4] == [expected[0], expected[2], expected[1], expected[3]]
    # SQLite without AUTOINCREMENT reuses the deleted profile's id; Django's table does not.
    reused = 2 if sqla.flavor.startswith("postgres") else 1
    assert got[4:] == [*expected[4:-1], (*expected[-1][:2], reused, expected[-1][3])]


def test_tutorial_receiver_creating_the_profile(django_side: DjangoSide, sqla: SqlaSide) -> None:
    """The tutorial's ``if created: Profile(user=instance)`` in a post_save receiver of User
    saves the profile once, with no warning; later saves of the user do not touch it, and
    deleting the user cascades to it (origin: the user)."""
    from django.db.models.signals import post_save as django_post_save

    def django_receiver(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
        if created:
            django_side.models.Profile.objects.create(user=instance)

    def sqla_receiver(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
        if created:
            _session_of(instance).add(sqla.models.Profile(user=instance))

    def django(m: Any) -> None:
        user = m.User.objects.create(name="ada")
        assert user.profile.user is user
        user.name = "grace"
        user.save()
        user.delete()

    async def sqlalchemy(db: Db) -> None:
        user = db.models.User(name="ada")
        db.add(user)
        await db.flush()
        assert user.profile is not None
        assert user.profile.user is user
        user.name = "grace"
        await db.flush()
        await db.delete(user)
        await db.flush()

    django_post_save.connect(django_receiver, sender=django_side.models.User)
    try:
        expected = django_side.run(django, SAVE_DELETE)
    finally:
        django_post_save.disconnect(django_receiver, sender=django_side.models.User)
    assert [(e[0], e[1]) for e in expected] == [
        ("pre_save", "User"),
        ("pre_save", "Profile"),
        ("post_save", "Profile"),
        ("post_save", "User"),
        ("pre_save", "User"),
        ("post_save", "User"),
        ("pre_delete", "Profile"),
        ("pre_delete", "User"),
        ("post_delete", "Profile"),
        ("post_delete", "User"),
    ]
    tm.post_save.connect(sqla_receiver, sender=sqla.models.User)
    try:
        got = sqla.run(sqlalchemy)
    finally:
        tm.post_save.disconnect(sqla_receiver, sender=sqla.models.User)
    # The profile's pair follows the user's post_save (documented nesting difference).
    assert got == [expected[0], expected[3], expected[1], expected[2], *expected[4:]]


def test_full_tutorial_with_save_user_profile(django_side: DjangoSide, sqla: SqlaSide) -> None:
    """Both tutorial receivers: the new profile is saved once (Django saves it twice), and each
    later save of the user saves the profile too, with created=False."""
    from django.db.models.signals import post_save as django_post_save

    def django_create(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
        if created:
            django_side.models.Profile.objects.create(user=instance)

    def django_save_profile(sender: Any, instance: Any, **kwargs: Any) -> None:
        instance.profile.save()

    def sqla_create(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
        if created:
            _session_of(instance).add(sqla.models.Profile(user=instance))

    def sqla_save_profile(sender: Any, instance: Any, **kwargs: Any) -> None:
        save(_session_of(instance), instance.profile, flush=False)

    def django(m: Any) -> None:
        user = m.User.objects.create(name="ada")
        user.name = "grace"
        user.save()

    async def sqlalchemy(db: Db) -> None:
        user = db.models.User(name="ada")
        db.add(user)
        await db.flush()
        user.name = "grace"
        await db.flush()

    user = django_side.models.User
    django_post_save.connect(django_create, sender=user)
    django_post_save.connect(django_save_profile, sender=user)
    try:
        expected = django_side.run(django, ("pre_save", "post_save"))
    finally:
        django_post_save.disconnect(django_create, sender=user)
        django_post_save.disconnect(django_save_profile, sender=user)
    assert [(e[0], e[1], e[3].get("created")) for e in expected] == [
        ("pre_save", "User", None),
        ("pre_save", "Profile", None),
        ("post_save", "Profile", True),
        ("pre_save", "Profile", None),
        ("post_save", "Profile", False),
        ("post_save", "User", True),
        ("pre_save", "User", None),
        ("pre_save", "Profile", None),
        ("post_save", "Profile", False),
        ("post_save", "User", False),
    ]
    tm.post_save.connect(sqla_create, sender=sqla.models.User)
    tm.post_save.connect(sqla_save_profile, sender=sqla.models.User)
    try:
        got = sqla.run(sqlalchemy, ("pre_save", "post_save"))
    finally:
        tm.post_save.disconnect(sqla_create, sender=sqla.models.User)
        tm.post_save.disconnect(sqla_save_profile, sender=sqla.models.User)
    # Documented: receivers' saves follow the user's post_save, and a profile saved twice
    # before it is written is written, and signalled, once.
    e = expected
    assert got == [e[0], e[5], e[1], e[2], e[6], e[9], e[7], e[8]]


def test_reverse_side_is_not_an_update_field(django_side: DjangoSide, sqlite: SqlaSide) -> None:
    """``update_fields=["profile"]`` is refused before any signal, as Django refuses it."""

    def django(m: Any) -> None:
        user = m.User.objects.create(name="ada")
        with pytest.raises(ValueError, match="profile"):
            user.save(update_fields=["profile"])

    async def sqlalchemy(db: Db) -> None:
        user = db.models.User(name="ada")
        db.add(user)
        await db.flush()
        with pytest.raises(ValueError, match="profile"):
            await db.save(user, update_fields=["profile"])

    expected = django_side.run(django, ("pre_save", "post_save"))
    assert len(expected) == 2
    assert sqlite.run(sqlalchemy, ("pre_save", "post_save")) == expected


# -- SQLAlchemy only ---------------------------------------------------------------------------


class Log:
    """Records ``(signal, sender, pk, changes)`` for the four save/delete signals."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any, Any]] = []
        for signal in (tm.pre_save, tm.post_save, tm.pre_delete, tm.post_delete):
            signal.connect(self.receive)

    def receive(self, signal: Any, sender: Any, instance: Any, **kwargs: Any) -> None:
        """Record one send."""
        self.calls.append((signal.name, sender.__name__, instance.id, kwargs.get("changes")))

    def close(self) -> None:
        """Disconnect."""
        for signal in (tm.pre_save, tm.post_save, tm.pre_delete, tm.post_delete):
            signal.disconnect(self.receive)


@pytest.fixture
def log() -> Iterator[Log]:
    """A log of the save and delete signals."""
    log = Log()
    yield log
    log.close()


@pytest.fixture
def models() -> Any:
    """A one-to-one without a unique constraint, so a profile can be replaced in one flush
    (SQLAlchemy inserts the new row before it deletes the old one), and a many-to-one
    joined on a non-primary-key column, whose old value SQLAlchemy never loads when set."""
    base = declarative_base("onetoone")
    instrument(base)

    class Owner(base):  # type: ignore[misc,valid-type]
        __tablename__ = "owner"
        id: Mapped[int] = mapped_column(primary_key=True)
        code: Mapped[str] = mapped_column(String(10), unique=True)
        name: Mapped[str] = mapped_column(String(50), default="")
        card: Mapped[Optional[Card]] = relationship(  # noqa: UP045
            back_populates="owner", cascade="all, delete-orphan"
        )

    class Card(base):  # type: ignore[misc,valid-type]
        __tablename__ = "card"
        id: Mapped[int] = mapped_column(primary_key=True)
        owner_id: Mapped[Optional[int]] = mapped_column(ForeignKey("owner.id"))  # noqa: UP045
        owner: Mapped[Optional[Owner]] = relationship(back_populates="card")  # noqa: UP045

    class Badge(base):  # type: ignore[misc,valid-type]
        __tablename__ = "badge"
        id: Mapped[int] = mapped_column(primary_key=True)
        owner_code: Mapped[str] = mapped_column(ForeignKey("owner.code"))
        owner: Mapped[Owner] = relationship()

    return types.SimpleNamespace(Base=base, Owner=Owner, Card=Card, Badge=Badge)


@pytest.fixture
def session(models: Any) -> Iterator[Session]:
    """A Session on a new SQLite database."""
    engine = create_engine("sqlite://", poolclass=StaticPool)
    models.Base.metadata.create_all(engine)
    with Session(engine) as session:
        yield session
    engine.dispose()


class Statements:
    """Records the first word of each SQL statement run on ``session``'s engine."""

    def __init__(self, session: Session) -> None:
        self.words: list[str] = []
        self.engine = session.get_bind()
        event.listen(self.engine, "before_cursor_execute", self.record)

    def record(self, _conn: Any, _cursor: Any, statement: str, *args: Any) -> None:
        """Record one statement."""
        self.words.append(statement.split()[0])

    def close(self) -> list[str]:
        """Stop recording; return the words."""
        event.remove(self.engine, "before_cursor_execute", self.record)
        return self.words


def test_replacing_an_unloaded_profile(models: Any, session: Session, log: Log) -> None:
    """Replacing a one-to-one whose old value was never loaded saves the new card and deletes
    the old one (its own origin), sends nothing for the owner, and queries the old card once,
    as SQLAlchemy alone does."""
    session.add(models.Owner(code="a", card=models.Card()))
    session.commit()
    session.expunge_all()
    owner = session.get(models.Owner, 1)
    assert owner is not None
    log.calls.clear()
    statements = Statements(session)
    owner.card = models.Card()
    owner.name = "ada"
    session.flush()
    assert log.calls == [
        ("pre_save", "Card", None, {}),
        ("pre_save", "Owner", 1, {"name": ("", "ada")}),
        ("pre_delete", "Card", 1, None),
        ("post_save", "Card", 2, {}),
        ("post_save", "Owner", 1, {"name": ("", "ada")}),
        ("post_delete", "Card", 1, None),
    ]
    assert statements.close() == ["SELECT", "UPDATE", "INSERT", "DELETE"]
    assert session.scalars(select(models.Card.id)).all() == [2]


def test_the_flush_adds_no_query(models: Any) -> None:
    """With receivers connected, a flush runs exactly the SQL it runs without them, also for
    relationships whose old value SQLAlchemy loads only at flush, and no warning."""

    def run(log: Log | None) -> tuple[list[str], list[tuple[str, str, Any, Any]]]:
        engine = create_engine("sqlite://", poolclass=StaticPool)
        models.Base.metadata.create_all(engine)
        with Session(engine) as session:
            session.add_all([models.Owner(code="a"), models.Owner(code="b")])
            session.add(models.Badge(owner_code="a"))
            session.commit()
            owner, other = session.get(models.Owner, 1), session.get(models.Owner, 2)
            badge = session.get(models.Badge, 1)
            assert owner is not None
            assert badge is not None
            statements = Statements(session)
            log = log or Log()
            log.calls.clear()
            owner.card = models.Card()  # reverse one-to-one, old value not loaded
            badge.owner = other  # many-to-one on a non-pk column, old value not loaded
            session.flush()
            calls = [(name, sender, pk, _plain(changes)) for name, sender, pk, changes in log.calls]
        engine.dispose()
        return statements.close(), calls

    bare_log = Log()
    bare_log.close()  # connected to nothing: the flush runs without receivers
    bare, nothing = run(bare_log)
    assert nothing == []
    log = Log()
    try:
        signalled, calls = run(log)
    finally:
        log.close()
    assert signalled == bare == ["SELECT", "SELECT", "UPDATE", "INSERT"]
    changed = {"owner": (("Owner", "a"), ("Owner", "b"))}
    assert calls == [
        ("pre_save", "Card", None, {}),
        ("pre_save", "Badge", 1, changed),
        ("post_save", "Card", 1, {}),
        ("post_save", "Badge", 1, {**changed, "owner_code": ("a", "b")}),
    ]


def _plain(changes: Any) -> Any:
    if not changes:
        return changes
    return {
        key: tuple((type(v).__name__, v.code) if hasattr(v, "code") else v for v in pair)
        for key, pair in changes.items()
    }


def test_pending_orphan_detached_outside_the_session_is_not_saved(
    models: Any, session: Session, log: Log
) -> None:
    """A new card detached from an owner that is not in the session is expunged by the flush,
    as SQLAlchemy does, and gets no save signals."""
    card = models.Card()
    session.add(card)
    owner = models.Owner(code="a")
    owner.card = card
    del owner.card  # the owner is outside the session: the card is "orphaned outside" it
    session.flush()
    assert log.calls == []
    assert card not in session
    assert session.scalars(select(models.Card)).all() == []


def test_orphan_takes_its_own_cascade_along(django_side: DjangoSide, sqla: SqlaSide) -> None:
    """A page removed from its book's delete-orphan collection is deleted with its notes, each
    signalled with the page as origin, like Django's page.delete()."""

    def django(m: Any) -> None:
        book = m.Book.objects.create(title="Emma")
        page = m.Page.objects.create(book=book)
        for _ in range(2):
            m.Note.objects.create(page=page)
        page.delete()

    async def sqlalchemy(db: Db) -> None:
        m = db.models
        book = m.Book(title="Emma", pages=[])
        db.add(book)
        await db.flush()
        page = m.Page(book=book, notes=[])
        db.add(page)
        await db.flush()
        for _ in range(2):
            page.notes.append(m.Note())
            await db.flush()
        book.pages.remove(page)
        await db.flush()
        assert await db.scalars(select(m.Note)) == []

    expected = django_side.run(django, SAVE_DELETE)
    assert [(e[0], e[1], e[2], e[3]["origin"]) for e in expected[-6:]] == [
        ("pre_delete", "Note", 1, ("Page", 1)),
        ("pre_delete", "Note", 2, ("Page", 1)),
        ("pre_delete", "Page", 1, ("Page", 1)),
        ("post_delete", "Note", 2, ("Page", 1)),
        ("post_delete", "Note", 1, ("Page", 1)),
        ("post_delete", "Page", 1, ("Page", 1)),
    ]
    assert sqla.run(sqlalchemy) == expected
