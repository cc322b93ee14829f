"""Differential tests: the same scenario on Django's ORM and on SQLAlchemy sends the same signals.

Each scenario is a pair: a Django function and an SQLAlchemy coroutine (the ``Db`` adapter
awaits what AsyncSession needs). Every SQLAlchemy operation is followed by a flush, so that
batches do not hide per-call order.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from tests.integrations.sqlalchemy.conftest import Db, DjangoSide, SqlaSide

INIT = ("pre_init", "post_init")


def test_create_sends_pre_and_post_save_with_created(
    django_side: DjangoSide, sqla: SqlaSide
) -> None:
    """Creating an object sends pre_save then post_save(created=True, update_fields=None)."""

    def django(m: Any) -> None:
        m.Person(first_name="Ada").save()
        m.Person.objects.create(first_name="Bob")

    async def sqlalchemy(db: Db) -> None:
        db.add(db.models.Person(first_name="Ada"))
        await db.flush()
        db.add(db.models.Person(first_name="Bob"))
        await db.flush()

    expected = django_side.run(django, ("pre_save", "post_save"))
    assert expected[1] == (
        "post_save",
        "Person",
        1,
        {"created": True, "raw": False, "using": "default", "update_fields": None},
    )
    assert sqla.run(sqlalchemy, ("pre_save", "post_save")) == expected


def test_update_sends_save_pair_with_created_false(django_side: DjangoSide, sqla: SqlaSide) -> None:
    """Changing a field and saving sends pre_save/post_save with created=False."""

    def django(m: Any) -> None:
        person = m.Person.objects.create(first_name="Ada")
        person.first_name = "Grace"
        person.save()

    async def sqlalchemy(db: Db) -> None:
        person = db.models.Person(first_name="Ada")
        db.add(person)
        await db.flush()
        person.first_name = "Grace"
        await db.flush()

    expected = django_side.run(django, ("pre_save", "post_save"))
    assert [entry[3].get("created") for entry in expected] == [None, True, None, False]
    assert sqla.run(sqlalchemy, ("pre_save", "post_save")) == expected


def test_noop_save_signals_only_through_explicit_save(
    django_side: DjangoSide, sqla: SqlaSide
) -> None:
    """An unchanged object gets no signals from a flush, but save() sends the pair like Django."""

    def django(m: Any) -> None:
        person = m.Person.objects.create(first_name="Ada")
        person.save()

    async def plain_flush(db: Db) -> None:
        person = db.models.Person(first_name="Ada")
        db.add(person)
        await db.flush()
        await db.flush()

    async def explicit_save(db: Db) -> None:
        person = db.models.Person(first_name="Ada")
        await db.save(person)
        await db.save(person)

    expected = django_side.run(django, ("pre_save", "post_save"))
    assert len(expected) == 4
    assert sqla.run(plain_flush, ("pre_save", "post_save")) == expected[:2]
    assert sqla.run(explicit_save, ("pre_save", "post_save")) == expected


def test_update_fields_reach_receivers_as_frozenset(
    django_side: DjangoSide, sqla: SqlaSide
) -> None:
    """save(update_fields=[...]) passes a frozenset and writes only those; [] sends nothing."""

    def django(m: Any) -> None:
        person = m.Person.objects.create(first_name="Ada")
        person.first_name = "Grace"
        person.last_name = "Hopper"
        person.save(update_fields=["first_name"])
        person.save(update_fields=[])

    async def sqlalchemy(db: Db) -> None:
        person = db.models.Person(first_name="Ada")
        await db.save(person)
        person.first_name = "Grace"
        person.last_name = "Hopper"
        await db.save(person, update_fields=["first_name"])
        await db.save(person, update_fields=[])
        db.forget()
        stored = await db.get(db.models.Person, 1)
        assert (stored.first_name, stored.last_name) == ("Grace", "")

    expected = django_side.run(django, ("pre_save", "post_save"))
    assert expected[-1][3]["update_fields"] == ["first_name"]
    assert django_side.models.Person.objects.get().last_name == ""
    assert sqla.run(sqlalchemy, ("pre_save", "post_save")) == expected


def test_explicit_pk_merge_decides_created(django_side: DjangoSide, sqla: SqlaSide) -> None:
    """A hand-assigned pk not in the table is an insert; the same pk again is an update."""

    def django(m: Any) -> None:
        m.Person(id=10, first_name="Ada").save()
        m.Person(id=10, first_name="Grace").save()

    async def sqlalchemy(db: Db) -> None:
        await db.merge(db.models.Person(id=10, first_name="Ada"))
        await db.flush()
        db.forget()
        await db.merge(db.models.Person(id=10, first_name="Grace"))
        await db.flush()

    expected = django_side.run(django, ("pre_save", "post_save"))
    assert [entry[3].get("created") for entry in expected] == [None, True, None, False]
    assert sqla.run(sqlalchemy, ("pre_save", "post_save")) == expected


def test_construction_sends_pre_init_and_post_init(django_side: DjangoSide, sqla: SqlaSide) -> None:
    """Construction sends pre_init(args=(), kwargs), post_init; a bad kwarg stops after pre_init."""

    def django(m: Any) -> None:
        m.Person(first_name="Ada")
        with pytest.raises(TypeError):
            m.Person(no_such_field=1)

    async def sqlalchemy(db: Db) -> None:
        db.models.Person(first_name="Ada")
        if sqla.flavor != "sqlmodel":  # SQLModel ignores unknown keyword arguments
            with pytest.raises(TypeError):
                db.models.Person(no_such_field=1)

    expected = django_side.run(django, INIT)
    assert [entry[0] for entry in expected] == ["pre_init", "post_init", "pre_init"]
    if sqla.flavor == "sqlmodel":
        expected = expected[:2]
    assert sqla.run(sqlalchemy, INIT) == expected


def test_loading_a_row_sends_init_signals_with_column_values(
    django_side: DjangoSide, sqla: SqlaSide
) -> None:
    """Loading a row sends pre_init(args=row values in column order, kwargs={}) then post_init."""

    def django(m: Any) -> None:
        m.Book.objects.create(title="Emma")
        m.Book.objects.get(pk=1)

    async def sqlalchemy(db: Db) -> None:
        db.add(db.models.Book(title="Emma"))
        await db.flush()
        db.forget()
        await db.get(db.models.Book, 1)

    expected = django_side.run(django, INIT)
    assert expected[-2] == ("pre_init", "Book", None, {"args": (1, "Emma"), "kwargs": {}})
    assert sqla.run(sqlalchemy, INIT) == expected


def test_subclass_is_the_sender(django_side: DjangoSide, sqla_declarative: SqlaSide) -> None:
    """A proxy (Django) or single-table subclass (SQLAlchemy) is the sender of save and delete."""

    def django(m: Any) -> None:
        person = m.ProxyPerson.objects.create(first_name="Ada")
        person.delete()

    async def sqlalchemy(db: Db) -> None:
        person = db.models.ProxyPerson(first_name="Ada")
        db.add(person)
        await db.flush()
        await db.delete(person)
        await db.flush()

    expected = django_side.run(django, ("pre_save", "post_save", "pre_delete", "post_delete"))
    assert {entry[1] for entry in expected} == {"ProxyPerson"}
    assert sqla_declarative.run(sqlalchemy) == expected


def test_joined_inheritance_save_and_delete(
    django_side: DjangoSide, sqla_declarative: SqlaSide
) -> None:
    """One save pair for the child; delete adds the parent's pair, as Django's MTI does."""

    def django(m: Any) -> None:
        restaurant = m.Restaurant.objects.create(name="Chez", serves="soup")
        restaurant.serves = "stew"
        restaurant.save()
        restaurant.delete()

    async def sqlalchemy(db: Db) -> None:
        restaurant = db.models.Restaurant(name="Chez", serves="soup")
        db.add(restaurant)
        await db.flush()
        restaurant.serves = "stew"
        await db.flush()
        await db.delete(restaurant)
        await db.flush()

    expected = django_side.run(django, ("pre_save", "post_save", "pre_delete", "post_delete"))
    assert [(entry[0], entry[1]) for entry in expected[-4:]] == [
        ("pre_delete", "Restaurant"),
        ("pre_delete", "Place"),
        ("post_delete", "Restaurant"),
        ("post_delete", "Place"),
    ]
    assert sqla_declarative.run(sqlalchemy) == expected


def test_cascade_delete_order_origin_and_set_null(django_side: DjangoSide, sqla: SqlaSide) -> None:
    """Cascades: every pre_delete first (dependents first, pk ascending), then post_delete
    (pk descending), all with origin=the book; the SET NULL review gets no save signal."""

    def django(m: Any) -> None:
        book = m.Book.objects.create(title="Emma")
        pages = [m.Page.objects.create(book=book, number=n) for n in (1, 2)]
        for page in pages:
            m.Note.objects.create(page=page, text="n")
        m.Review.objects.create(book=book, stars=5)
        book.delete()

    async def sqlalchemy(db: Db) -> None:
        m = db.models
        book = m.Book(title="Emma")
        db.add(book)
        await db.flush()
        pages = []
        for number in (1, 2):
            pages.append(m.Page(book=book, number=number))
            db.add(pages[-1])
            await db.flush()
        for page in pages:
            db.add(m.Note(page=page, text="n"))
            await db.flush()
        db.add(m.Review(book=book, stars=5))
        await db.flush()
        await db.delete(book)
        await db.flush()
        review = (await db.scalars(select(m.Review)))[0]
        assert review.book_id is None

    expected = django_side.run(django, ("pre_save", "post_save", "pre_delete", "post_delete"))
    deletes = [(e[0], e[1], e[2]) for e in expected if e[0].endswith("delete")]
    assert deletes == [
        ("pre_delete", "Note", 1),
        ("pre_delete", "Note", 2),
        ("pre_delete", "Page", 1),
        ("pre_delete", "Page", 2),
        ("pre_delete", "Book", 1),
        ("post_delete", "Note", 2),
        ("post_delete", "Note", 1),
        ("post_delete", "Page", 2),
        ("post_delete", "Page", 1),
        ("post_delete", "Book", 1),
    ]
    assert sqla.run(sqlalchemy, ("pre_save", "post_save", "pre_delete", "post_delete")) == expected


def test_lazy_sender_connects_when_the_model_is_registered(
    django_side: DjangoSide, sqla_declarative: SqlaSide
) -> None:
    """A receiver connected to "lifecycle.Person" receives that model's saves on both sides."""
    from django.db.models.signals import post_save as django_post_save

    import tidings.models as tm

    def run_with(signal: Any, run: Any, scenario: Any) -> list[Any]:
        seen: list[Any] = []

        def receiver(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
            seen.append((sender.__name__, instance.id, created))

        signal.connect(receiver, sender="lifecycle.Person", weak=False)
        try:
            run(scenario)
        finally:
            signal.disconnect(receiver, sender="lifecycle.Person")
        return seen

    def django(m: Any) -> None:
        m.Person.objects.create(first_name="Ada")
        m.Book.objects.create(title="Emma")

    async def sqlalchemy(db: Db) -> None:
        db.add(db.models.Person(first_name="Ada"))
        await db.flush()
        db.add(db.models.Book(title="Emma"))
        await db.flush()

    expected = run_with(django_post_save, lambda s: django_side.run(s, ()), django)
    assert expected == [("Person", 1, True)]
    assert run_with(tm.post_save, lambda s: sqla_declarative.run(s, ()), sqlalchemy) == expected


def test_receivers_run_in_connection_order(django_side: DjangoSide, sqla: SqlaSide) -> None:
    """Global and sender-specific receivers share one list and run in connection order."""
    from django.db.models.signals import pre_save as django_pre_save

    import tidings.models as tm

    def run_with(signal: Any, person: type, run: Any, scenario: Any) -> list[str]:
        calls: list[str] = []

        def first(**kwargs: Any) -> None:
            calls.append("first(any)")

        def second(**kwargs: Any) -> None:
            calls.append("second(Person)")

        def third(**kwargs: Any) -> None:
            calls.append("third(any)")

        signal.connect(first)
        signal.connect(second, sender=person)
        signal.connect(third)
        try:
            run(scenario)
        finally:
            signal.disconnect(first)
            signal.disconnect(second, sender=person)
            signal.disconnect(third)
        return calls

    def django(m: Any) -> None:
        m.Person.objects.create(first_name="Ada")

    async def sqlalchemy(db: Db) -> None:
        db.add(db.models.Person(first_name="Ada"))
        await db.flush()

    expected = run_with(
        django_pre_save, django_side.models.Person, lambda s: django_side.run(s, ()), django
    )
    assert expected == ["first(any)", "second(Person)", "third(any)"]
    got = run_with(tm.pre_save, sqla.models.Person, lambda s: sqla.run(s, ()), sqlalchemy)
    assert got == expected


class Boom(Exception):
    """Raised by a receiver on purpose."""


@pytest.mark.parametrize(
    ("signal_name", "django_rows"),
    [("pre_save", 0), ("post_save", 1)],
    ids=["pre_save-nothing-written", "post_save-django-keeps-row"],
)
def test_save_receiver_exception_propagates(
    django_side: DjangoSide, sqla: SqlaSide, signal_name: str, django_rows: int
) -> None:
    """A save receiver's exception reaches the caller in both; SQLAlchemy rolls the flush back.

    For pre_save no row is written anywhere; for post_save Django (autocommit) keeps the row
    while SQLAlchemy's rollback removes it (documented difference).
    """
    import django.db.models.signals as django_signals

    import tidings.models as tm

    django_signal = getattr(django_signals, signal_name)
    tidings_signal = getattr(tm, signal_name)

    def boom(**kwargs: Any) -> None:
        raise Boom

    def django(m: Any) -> None:
        with pytest.raises(Boom):
            m.Person.objects.create(first_name="Ada")
        assert m.Person.objects.count() == django_rows

    async def sqlalchemy(db: Db) -> None:
        db.add(db.models.Person(first_name="Ada"))
        with pytest.raises(Boom):
            await db.flush()
        await db.rollback()
        assert (await db.scalars(select(func.count()).select_from(db.models.Person))) == [0]

    django_signal.connect(boom)
    try:
        django_side.run(django, ())
    finally:
        django_signal.disconnect(boom)
    tidings_signal.connect(boom)
    try:
        sqla.run(sqlalchemy, ())
    finally:
        tidings_signal.disconnect(boom)


def test_profile_created_in_post_save_receiver_is_written(
    django_side: DjangoSide, sqla: SqlaSide
) -> None:
    """The classic example: a post_save receiver of User creates a Profile, saved at once."""
    from django.db.models.signals import post_save as django_post_save
    from sqlalchemy.orm import object_session

    import tidings.models as tm

    def django_receiver(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
        if created:
            django_side.models.Profile.objects.create(user=instance)

    def sqla_receiver(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
        if created:
            session = object_session(instance)
            assert session is not None
            session.add(sqla.models.Profile(user=instance))

    def django(m: Any) -> None:
        m.User.objects.create(name="ada")
        assert m.Profile.objects.get().user.name == "ada"

    async def sqlalchemy(db: Db) -> None:
        db.add(db.models.User(name="ada"))
        await db.flush()
        assert not db.sync.new
        await db.commit()
        profiles = await db.scalars(select(db.models.Profile))
        assert [profile.user_id for profile in profiles] == [1]

    django_post_save.connect(django_receiver, sender=django_side.models.User)
    try:
        expected = django_side.run(django, ("pre_save", "post_save"))
    finally:
        django_post_save.disconnect(django_receiver, sender=django_side.models.User)
    assert [(e[0], e[1]) for e in expected] == [
        ("pre_save", "User"),
        ("pre_save", "Profile"),
        ("post_save", "Profile"),
        ("post_save", "User"),
    ]
    tm.post_save.connect(sqla_receiver, sender=sqla.models.User)
    try:
        got = sqla.run(sqlalchemy, ("pre_save", "post_save"))
    finally:
        tm.post_save.disconnect(sqla_receiver, sender=sqla.models.User)
    # The nested save runs after the outer post_save in SQLAlchemy (documented difference).
    assert got == [expected[0], expected[3], expected[1], expected[2]]


def test_orphan_removal_is_a_delete(django_side: DjangoSide, sqla_declarative: SqlaSide) -> None:
    """A page removed from a delete-orphan collection gets pre/post_delete like Django's
    page.delete(), and no save signals."""

    def django(m: Any) -> None:
        book = m.Book.objects.create(title="Emma")
        page = m.Page.objects.create(book=book)
        page.delete()

    async def sqlalchemy(db: Db) -> None:
        book = db.models.Book(title="Emma", pages=[])
        db.add(book)
        await db.flush()
        page = db.models.Page(book=book)
        db.add(page)
        await db.flush()
        book.pages.remove(page)
        await db.flush()
        assert await db.scalars(select(db.models.Page)) == []

    expected = django_side.run(django, ("pre_save", "post_save", "pre_delete", "post_delete"))
    assert [e[:2] for e in expected[-2:]] == [("pre_delete", "Page"), ("post_delete", "Page")]
    got = sqla_declarative.run(sqlalchemy, ("pre_save", "post_save", "pre_delete", "post_delete"))
    assert got == expected


def test_signals_are_not_undone_by_a_rollback(django_side: DjangoSide, sqla: SqlaSide) -> None:
    """A save inside a transaction that rolls back has already sent pre_save and post_save."""

    def django(m: Any) -> None:
        from django.db import transaction

        with transaction.atomic():
            m.Person.objects.create(first_name="Ada")
            transaction.set_rollback(True)
        assert m.Person.objects.count() == 0

    async def sqlalchemy(db: Db) -> None:
        db.add(db.models.Person(first_name="Ada"))
        await db.flush()
        await db.rollback()
        assert await db.scalars(select(func.count()).select_from(db.models.Person)) == [0]

    expected = django_side.run(django, ("pre_save", "post_save"))
    assert [entry[0] for entry in expected] == ["pre_save", "post_save"]
    assert sqla.run(sqlalchemy, ("pre_save", "post_save")) == expected
