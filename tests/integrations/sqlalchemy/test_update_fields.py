"""save(update_fields=[...]): the other changed fields are not written, and stay pending.

As in Django, the next save() that covers them writes them, and nothing else does: a plain
flush or commit leaves them unwritten.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import text

import tidings.models as tm
from tests.integrations.sqlalchemy.conftest import Db, DjangoSide, SqlaSide
from tidings import Signal
from tidings.sqlalchemy import save


@pytest.fixture(params=["sqlite", "sqlite-async"])
def sqla_sqlite(request: pytest.FixtureRequest) -> SqlaSide:
    """The SQLAlchemy side on SQLite, with a sync Session and with an AsyncSession."""
    return SqlaSide(request.param, request)


@contextlib.contextmanager
def _connected(signal: Signal, receiver: Callable[..., Any], sender: Any = None) -> Iterator[None]:
    """``receiver`` connected to ``signal`` (for ``sender``) inside the block only."""
    signal.connect(receiver, sender=sender)
    try:
        yield
    finally:
        signal.disconnect(receiver, sender=sender)


async def _row(db: Db) -> tuple[Any, ...]:
    """The stored names."""
    with db.sync.no_autoflush:
        result = await db.execute(text("SELECT first_name, last_name FROM person"))
    return tuple(result.one())


async def _changed_person(db: Db) -> Any:
    """A saved Ada, renamed Grace Hopper in memory only."""
    person = db.models.Person(first_name="Ada")
    await db.save(person)
    person.first_name = "Grace"
    person.last_name = "Hopper"
    return person


def test_a_later_full_save_writes_what_update_fields_left_out(
    django_side: DjangoSide, sqla_sqlite: SqlaSide
) -> None:
    """As in Django, a full save() after save(update_fields=[...]) writes the unlisted change."""
    rows: list[tuple[Any, ...]] = []

    def django(m: Any) -> None:
        person = m.Person.objects.create(first_name="Ada")
        person.first_name = "Grace"
        person.last_name = "Hopper"
        person.save(update_fields=["first_name"])
        rows.append(tuple(m.Person.objects.values_list("first_name", "last_name").get()))
        person.save()
        rows.append(tuple(m.Person.objects.values_list("first_name", "last_name").get()))

    changes: list[dict[str, Any]] = []

    async def sqlalchemy(db: Db) -> None:
        person = await _changed_person(db)
        await db.save(person, update_fields=["first_name"])
        rows.append(await _row(db))
        assert person.last_name == "Hopper"
        await db.save(person)
        rows.append(await _row(db))

    def note(changes_: dict[str, Any], **kwargs: Any) -> None:
        changes.append(changes_)

    expected = django_side.run(django, ("pre_save", "post_save"))
    assert rows == [("Grace", ""), ("Grace", "Hopper")]
    rows.clear()
    tm.post_save.connect(lambda changes, **kw: note(changes), weak=False, dispatch_uid="note")
    try:
        assert sqla_sqlite.run(sqlalchemy, ("pre_save", "post_save")) == expected
    finally:
        tm.post_save.disconnect(dispatch_uid="note")
    assert rows == [("Grace", ""), ("Grace", "Hopper")]
    # Each save reports what it wrote; the withheld change keeps its old value.
    assert changes == [{}, {"first_name": ("Ada", "Grace")}, {"last_name": ("", "Hopper")}]


def test_a_plain_commit_does_not_write_the_withheld_change(
    django_side: DjangoSide, sqla_sqlite: SqlaSide
) -> None:
    """As in Django, only a save() writes what save(update_fields=[...]) left out; a commit
    does not, and once the commit expires the object the unwritten value is gone."""
    rows: list[tuple[Any, ...]] = []

    def django(m: Any) -> None:
        from django.db import transaction

        with transaction.atomic():
            person = m.Person.objects.create(first_name="Ada")
            person.first_name = "Grace"
            person.last_name = "Hopper"
            person.save(update_fields=["first_name"])
        rows.append(tuple(m.Person.objects.values_list("first_name", "last_name").get()))

    async def sqlalchemy(db: Db) -> None:
        person = await _changed_person(db)
        await db.save(person, update_fields=["first_name"])
        await db.commit()
        rows.append(await _row(db))
        await db.refresh(person)
        assert person.last_name == ""
        await db.save(person)  # nothing left to write
        rows.append(await _row(db))

    expected = django_side.run(django, ("pre_save", "post_save"))
    assert sqla_sqlite.run(sqlalchemy, ("pre_save", "post_save"))[:4] == expected
    assert rows == [("Grace", ""), ("Grace", ""), ("Grace", "")]


def test_setting_a_withheld_field_again_makes_it_an_ordinary_change(sqla_sqlite: SqlaSide) -> None:
    """A withheld field set again is written by the next flush, its old value the stored one."""
    seen: list[Any] = []

    def receiver(update_fields: Any, changes: Any, **kwargs: Any) -> None:
        seen.append((update_fields, changes))

    async def scenario(db: Db) -> None:
        person = await _changed_person(db)
        await db.save(person, update_fields=["first_name"])
        person.last_name = "Lovelace"
        with _connected(tm.pre_save, receiver, db.models.Person):
            await db.flush()
        assert await _row(db) == ("Grace", "Lovelace")

    sqla_sqlite.run(scenario, ())
    assert seen == [(None, {"last_name": ("", "Lovelace")})]


def test_unlisted_changes_stay_pending_after_a_pre_save_receiver_raised(
    sqla_sqlite: SqlaSide,
) -> None:
    """A pre_save error during save(update_fields=[...]) leaves every change for the retry."""
    fail = [True]

    def receiver(**kwargs: Any) -> None:
        if fail[0]:
            raise RuntimeError("pre_save failed")

    async def scenario(db: Db) -> None:
        person = db.models.Person(first_name="Ada")
        db.add(person)
        await db.commit()
        person.first_name = "Grace"
        person.last_name = "Hopper"
        with _connected(tm.pre_save, receiver, db.models.Person):
            with pytest.raises(RuntimeError, match="pre_save failed"):
                await db.save(person, update_fields=["first_name"])
            fail[0] = False
            await db.commit()
        assert await _row(db) == ("Grace", "Hopper")

    sqla_sqlite.run(scenario, ())


def test_pre_save_receivers_changes_to_unlisted_fields_are_withheld_too(
    django_side: DjangoSide, sqla_sqlite: SqlaSide
) -> None:
    """A pre_save receiver's change to a field not in update_fields is not written, as in Django."""
    rows: list[tuple[Any, ...]] = []

    def stamp(instance: Any, **kwargs: Any) -> None:
        instance.last_name = "Stamped"

    def django(m: Any) -> None:
        person = m.Person.objects.create(first_name="Ada")
        person.first_name = "Grace"
        from django.db.models.signals import pre_save as django_pre_save

        django_pre_save.connect(stamp, sender=m.Person)
        try:
            person.save(update_fields=["first_name"])
        finally:
            django_pre_save.disconnect(stamp, sender=m.Person)
        rows.append(tuple(m.Person.objects.values_list("first_name", "last_name").get()))
        assert person.last_name == "Stamped"

    async def sqlalchemy(db: Db) -> None:
        person = db.models.Person(first_name="Ada")
        await db.save(person)
        person.first_name = "Grace"
        with _connected(tm.pre_save, stamp, db.models.Person):
            await db.save(person, update_fields=["first_name"])
        rows.append(await _row(db))
        assert person.last_name == "Stamped"

    django_side.run(django, ())
    sqla_sqlite.run(sqlalchemy, ())
    assert rows == [("Grace", ""), ("Grace", "")]


def test_a_full_save_from_a_post_save_receiver_writes_the_withheld_change(
    sqla_sqlite: SqlaSide,
) -> None:
    """save() of the same object in a post_save receiver writes the unlisted change at once."""
    seen: list[Any] = []

    async def scenario(db: Db) -> None:
        person = await _changed_person(db)

        def again(instance: Any, update_fields: Any, **kwargs: Any) -> None:
            seen.append(update_fields)
            if update_fields is not None:
                save(db.sync, instance)

        with _connected(tm.post_save, again, db.models.Person):
            await db.save(person, update_fields=["first_name"])
        assert await _row(db) == ("Grace", "Hopper")
        assert not db.sync.dirty

    sqla_sqlite.run(scenario, ())
    assert seen == [frozenset({"first_name"}), None]
