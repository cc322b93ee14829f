"""The Django differential scenarios under AsyncSession and on PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.pool import StaticPool

from tests.oracle.m2m.harness import (
    by_phase,
    fresh_models,
    run_django,
    run_sqla,
    sqla_engine_url,
)
from tests.oracle.m2m.scenarios import SCENARIOS
from tidings.models import m2m_changed


@pytest.mark.parametrize(
    "flavor",
    [
        "sqlite-async",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("postgres-async", marks=pytest.mark.postgres),
    ],
)
def test_same_signals_as_django(flavor: str, request: pytest.FixtureRequest) -> None:
    """Every differential scenario sends Django's sequence on this backend too."""
    postgres_url = request.getfixturevalue("postgres_url") if "postgres" in flavor else None
    url = sqla_engine_url(flavor, postgres_url)
    models = fresh_models()
    mismatches = {}
    for scenario in SCENARIOS:
        expected = by_phase(run_django(scenario))
        got = by_phase(run_sqla(scenario, models, url))
        if got != expected:
            mismatches[scenario.name] = (got, expected)
    assert mismatches == {}


#: The scenarios that only use books and authors (the SQLModel twins have no others).
BOOKS_AND_AUTHORS = [
    s
    for s in SCENARIOS
    if s.name
    in {
        "add-forward",
        "add-one-at-a-time",
        "add-reverse",
        "remove-forward",
        "remove-reverse",
        "set-forward",
        "set-same-members-sends-nothing",
        "set-empty-removes",
        "set-reverse",
        "clear-forward",
        "clear-reverse",
        "clear-then-add-back",
        "clear-then-other-side-adds-back",
        "several-instances-keep-call-order",
        "delete-owner-sends-no-m2m",
        "add-to-new-object",
    }
]


def test_sqlmodel_link_model() -> None:
    """SQLModel's link_model relationships send Django's sequence, with the link class as sender."""
    from tests.oracle.m2m.sqlmodel_twins import MODELS

    mismatches = {}
    for scenario in BOOKS_AND_AUTHORS:
        expected = by_phase(run_django(scenario))
        got = by_phase(run_sqla(scenario, MODELS, "sqlite://"))
        if got != expected:
            mismatches[scenario.name] = (got, expected)
    assert mismatches == {}
    assert len(BOOKS_AND_AUTHORS) == 16
    senders: list[Any] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        senders.append(sender)

    m2m_changed.connect(receiver)
    try:
        engine = create_engine("sqlite://")
        MODELS.Base.metadata.create_all(engine)
        with Session(engine) as session:
            session.add(MODELS.Book(id=1, authors=[MODELS.Author(id=1)]))
            session.flush()
        engine.dispose()
    finally:
        m2m_changed.disconnect(receiver)
    assert senders == [MODELS.BookAuthorLink] * 2


def test_async_receivers_are_awaited_inside_the_flush() -> None:
    """Under AsyncSession an async receiver is awaited before flush() returns, pre then post."""
    models = fresh_models()
    seen: list[tuple[str, Any]] = []

    async def receiver(sender: Any, action: str, pk_set: Any, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        seen.append((action, pk_set))

    async def main() -> None:
        engine = create_async_engine("sqlite+aiosqlite://", poolclass=StaticPool)
        async with engine.begin() as connection:
            await connection.run_sync(models.Base.metadata.create_all)
        async with AsyncSession(engine, expire_on_commit=False) as session:
            book, author = models.Book(id=1), models.Author(id=7)
            set_committed_value(book, "authors", [])
            session.add_all([book, author])
            await session.flush()
            m2m_changed.connect(receiver, sender=models.book_authors)
            try:
                book.authors.append(author)
                await session.flush()
                assert seen == [("pre_add", {7}), ("post_add", {7})]
                rows = await session.execute(select(models.book_authors))
                assert rows.all() == [(1, 7)]
            finally:
                m2m_changed.disconnect(receiver, sender=models.book_authors)
        await engine.dispose()

    asyncio.run(main())
    assert len(seen) == 2
