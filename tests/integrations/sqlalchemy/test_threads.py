"""Threads: receivers come and go while other threads load and flush."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

import tidings.models as tm
from tests.core._support import run_threads
from tests.integrations.sqlalchemy.twins import build, declarative_base
from tidings.sqlalchemy import instrument


def test_connecting_init_receivers_while_other_threads_load(tmp_path: Path) -> None:
    """Loads in three threads never fail while a fourth connects and disconnects receivers."""
    base = declarative_base()
    instrument(base)
    m = build(base)
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    m.Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([m.Book(title=str(n)) for n in range(300)])
        session.commit()
    loads: list[int] = []
    stop = time.monotonic() + 1.0

    def receiver(**kwargs: Any) -> None:
        pass

    def load() -> None:
        while time.monotonic() < stop:
            with Session(engine) as session:
                loads.append(len(session.scalars(select(m.Book)).all()))

    def toggle() -> None:
        while time.monotonic() < stop:
            tm.post_init.connect(receiver, sender=m.Book)
            tm.pre_save.connect(receiver)
            with Session(engine) as session:
                session.scalars(select(m.Book).limit(1)).all()
                session.add(m.Book(title="t"))
                session.rollback()
            tm.post_init.disconnect(receiver, sender=m.Book)
            tm.pre_save.disconnect(receiver)

    try:
        run_threads([load, load, load, toggle])
    finally:
        engine.dispose()
    assert loads
    assert set(loads) == {300}
