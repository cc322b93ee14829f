"""Fixtures shared by the whole suite: real servers, found through environment variables.

Tests marked ``stress`` (long race and load runs) are skipped unless the marker is selected
explicitly (``pytest -m stress``, ``make stress``), so a plain ``pytest`` run stays fast.
"""

from __future__ import annotations

import contextlib
import gc
import os
import uuid
from collections.abc import Iterator

import pytest

POSTGRES_URL = os.environ.get("TIDINGS_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``stress`` tests unless the ``-m`` expression asks for them."""
    if "stress" in (config.getoption("markexpr", "") or ""):
        return
    skip = pytest.mark.skip(reason="stress test: run with -m stress")
    for item in items:
        if "stress" in item.keywords:
            item.add_marker(skip)


def _server_missing(what: str, install: str) -> None:
    """Skip the test, or fail it under CI, where the servers must be there."""
    message = f"{what} is unreachable; {install}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@contextlib.contextmanager
def fresh_postgres_database(prefix: str = "tidings") -> Iterator[str]:
    """Create a new empty database, yield its URL (``postgresql://…``, no driver), drop it.

    Skips the test where PostgreSQL is unreachable, or fails it under ``CI=true``.
    """
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dev dependency
        _server_missing("psycopg", 'pip install "psycopg[binary]"')
        raise
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        _server_missing(
            f"PostgreSQL at {POSTGRES_URL} ({exc.__class__.__name__})",
            "install and start PostgreSQL or set TIDINGS_POSTGRES_URL",
        )
        raise
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            base, _, _ = POSTGRES_URL.rpartition("/")
            yield f"{base}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL (``postgresql://…``, no driver) of a new empty database, dropped afterwards."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="module", autouse=True)
def _frozen_heap() -> None:
    """Keep ``gc.collect()`` cheap: what is alive when a module starts is moved out of its reach.

    A full collection walks every tracked object, and with the whole suite imported (Django,
    SQLAlchemy, Hypothesis...) that is about 200,000 of them: a good part of a second per
    ``gc.collect()``, which the lifetime and leak tests call hundreds of times. The objects a
    test creates are not frozen, so collections still find every cycle among them; the
    collection first clears the previous module's garbage, so none of it is kept for good.
    """
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _restore_installed_outbox() -> Iterator[None]:
    """Undo the outboxes a test installed (tidings.outbox's current outbox is process-wide).

    Nothing is imported here: a test that never loads tidings.outbox leaves it unloaded.
    """
    import sys

    module = sys.modules.get("tidings.outbox._outbox")
    installed = list(module._installed) if module is not None else []
    yield
    module = sys.modules.get("tidings.outbox._outbox")
    if module is not None:
        module._installed[:] = installed
