"""post_bulk_update / post_bulk_delete for ORM update() and delete() statements."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import delete, select, update

import tidings.models as tm
from tests.integrations.sqlalchemy.conftest import Db, SqlaSide


class Bulk:
    """Records the bulk signals' keyword arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, signal: Any, sender: Any, **kwargs: Any) -> None:
        self.calls.append((signal.name, sender.__name__, kwargs))


@pytest.fixture
def bulk() -> Iterator[Bulk]:
    """A receiver connected to both bulk signals for any sender."""
    bulk = Bulk()
    tm.post_bulk_update.connect(bulk)
    tm.post_bulk_delete.connect(bulk)
    yield bulk
    tm.post_bulk_update.disconnect(bulk)
    tm.post_bulk_delete.disconnect(bulk)


async def three_people(db: Db) -> None:
    """Insert Ada, Bob and Cy (pks 1, 2, 3)."""
    db.add(*(db.models.Person(first_name=name) for name in ("Ada", "Bob", "Cy")))
    await db.flush()


def test_update_and_delete_report_statement_pks_and_rowcount(
    sqla_declarative: SqlaSide, bulk: Bulk
) -> None:
    """Both databases return the affected pks (RETURNING); the caller keeps its rowcount."""
    counts: list[int] = []

    async def scenario(db: Db) -> None:
        await three_people(db)
        person = db.models.Person
        result = await db.execute(update(person).where(person.id > 1).values(last_name="X"))
        counts.append(result.rowcount)
        result = await db.execute(delete(person).where(person.first_name == "Cy"))
        counts.append(result.rowcount)
        assert [p.first_name for p in await db.scalars(select(person))] == ["Ada", "Bob"]

    sqla_declarative.run(scenario, ())
    assert counts == [2, 1]
    (name1, sender1, update_kw), (name2, sender2, delete_kw) = bulk.calls
    assert (name1, sender1, name2, sender2) == (
        "post_bulk_update",
        "Person",
        "post_bulk_delete",
        "Person",
    )
    assert sorted(update_kw.pop("pks")) == [2, 3]
    assert update_kw["rowcount"] == 2
    assert update_kw["using"] == "default"
    assert str(update_kw["statement"]).startswith("UPDATE person SET last_name")
    assert delete_kw["pks"] == (3,)
    assert delete_kw["rowcount"] == 1


def test_statement_with_its_own_returning_gives_pks_none(sqlite: SqlaSide, bulk: Bulk) -> None:
    """A statement with RETURNING is left alone: the caller gets its rows, pks is None."""
    rows: list[Any] = []

    async def scenario(db: Db) -> None:
        await three_people(db)
        person = db.models.Person
        result = await db.execute(
            update(person).where(person.id == 2).values(last_name="X").returning(person.first_name)
        )
        rows.extend(result.scalars())

    sqlite.run(scenario, ())
    assert rows == ["Bob"]
    assert bulk.calls[0][2]["pks"] is None


def test_bulk_update_by_primary_key_takes_pks_from_parameters(sqlite: SqlaSide, bulk: Bulk) -> None:
    """update(Model) with a list of parameter dicts reports the pks it was given."""

    async def scenario(db: Db) -> None:
        await three_people(db)
        await db.execute(
            update(db.models.Person),
            [{"id": 1, "last_name": "A"}, {"id": 3, "last_name": "C"}],
        )

    sqlite.run(scenario, ())
    assert bulk.calls[0][2]["pks"] == (1, 3)


def test_sender_specific_receivers_and_unlistened_models(sqlite: SqlaSide) -> None:
    """Only the statement's model is the sender; statements on other models run untouched."""
    calls: list[Any] = []

    def on_book(sender: Any, pks: Any, **kwargs: Any) -> None:
        calls.append((sender.__name__, pks))

    async def scenario(db: Db) -> None:
        await three_people(db)
        db.add(db.models.Book(title="Emma"))
        await db.flush()
        result = await db.execute(delete(db.models.Person))
        assert result.returned_defaults_rows is None
        await db.execute(update(db.models.Book).values(title="Persuasion"))

    tm.post_bulk_update.connect(on_book, sender=sqlite.models.Book)
    try:
        sqlite.run(scenario, ())
    finally:
        tm.post_bulk_update.disconnect(on_book, sender=sqlite.models.Book)
    assert calls == [("Book", (1,))]


def test_legacy_query_update_is_reported(sqlite: SqlaSide, bulk: Bulk) -> None:
    """Query.update() (1.x style) goes through the same hook."""

    async def scenario(db: Db) -> None:
        await three_people(db)
        db.sync.query(db.models.Person).filter_by(first_name="Ada").update({"last_name": "L"})

    sqlite.run(scenario, ())
    assert [(name, kw["pks"]) for name, _, kw in bulk.calls] == [("post_bulk_update", (1,))]
