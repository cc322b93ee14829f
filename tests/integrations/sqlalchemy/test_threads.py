"""Threads: receivers come and go while other threads load and flush."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

import tidings.models as tm
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
    errors: list[BaseException] = []
    loads: list[int] = []
    barrier = threading.Barrier(4)
    stop = time.monotonic() + 1.0

    def receiver(**kwargs: Any) -> None:
        pass

    def load() -> None:
        try:
            barrier.wait()
            while time.monotonic() < stop:
                with Session(engine) as session:
                    loads.append(len(session.scalars(select(m.Book)).all()))
        except BaseException as exc:  # reported below, with the thread's traceback
            errors.append(exc)

    def toggle() -> None:
        try:
            barrier.wait()
            while time.monotonic() < stop:
                tm.post_init.connect(receiver, sender=m.Book)
                tm.pre_save.connect(receiver)
                with Session(engine) as session:
                    session.scalars(select(m.Book).limit(1)).all()
                    session.add(m.Book(title="t"))
                    session.rollback()
                tm.post_init.disconnect(receiver, sender=m.Book)
                tm.pre_save.disconnect(receiver)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(3)] + [threading.Thread(target=toggle)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    engine.dispose()
    assert errors == []
    assert loads
    assert set(loads) == {300}
