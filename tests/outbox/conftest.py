"""Outboxes on SQLite and PostgreSQL for the durable-delivery tests."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from tests.conftest import fresh_postgres_database
from tidings.outbox import Outbox


def make_engine(kind: str, tmp_path: Path) -> Iterator[Engine]:
    """Yield an engine on a new SQLite file or a new PostgreSQL database, disposed afterwards."""
    if kind == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'outbox.db'}")
        try:
            yield engine
        finally:
            engine.dispose()
        return
    with fresh_postgres_database("tidings_outbox") as url:
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            yield engine
        finally:
            engine.dispose()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """An engine on a database of the module's own, SQLite and PostgreSQL."""
    yield from make_engine(request.param, tmp_path_factory.mktemp("outbox"))


@pytest.fixture
def outbox(engine: Engine) -> Iterator[Outbox]:
    """An outbox with tables of its own (a fresh prefix), dropped afterwards."""
    box = Outbox(engine, prefix=f"outbox_{uuid.uuid4().hex[:8]}")
    box.create_all()
    yield box
    box.drop_all()


@pytest.fixture
def pg_engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty PostgreSQL database."""
    yield from make_engine("postgresql", tmp_path)


@pytest.fixture(autouse=True)
def _quiet_relay_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Capture the relay's warnings (tests read them from caplog)."""
    caplog.set_level(logging.WARNING, logger="tidings.outbox")
