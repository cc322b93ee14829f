"""A session's objects leave nothing behind in tidings once the session is closed.

Each check runs a whole life cycle (insert, load, update, ``save(update_fields=...)``, m2m
changes, delete, commit) with receivers on every model signal, once small to fill every cache,
then twice large, under ``tracemalloc``: the memory the second large one leaves allocated must not
grow with the number of objects. The ``stress`` version uses 100,000 objects.
"""

from __future__ import annotations

import gc
import os
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import String, create_engine, select
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    selectinload,
)
from sqlalchemy.pool import StaticPool

import tidings
import tidings.models as tm
from tests.integrations.sqlalchemy.m2m_models import link_table
from tidings.apps import apps
from tidings.sqlalchemy import _m2m_record, instrument, save

#: tidings' own source files: allocations made from there are tidings'.
PACKAGE = os.path.dirname(tidings.__file__)

SIGNALS = (
    tm.pre_init,
    tm.post_init,
    tm.pre_save,
    tm.post_save,
    tm.pre_delete,
    tm.post_delete,
    tm.m2m_changed,
)


class Models:
    """An item with a many-to-many tag collection, under a fresh instrumented base."""

    def __init__(self) -> None:
        class Base(DeclarativeBase):
            __app_label__ = "leaks"

        instrument(Base)
        links = link_table(Base.metadata, "item_tags", "item", "tag")

        class Tag(Base):
            __tablename__ = "tag"
            id: Mapped[int] = mapped_column(primary_key=True)
            name: Mapped[str] = mapped_column(String(20))
            items: Mapped[list[Item]] = relationship(secondary=links, back_populates="tags")

        class Item(Base):
            __tablename__ = "item"
            id: Mapped[int] = mapped_column(primary_key=True)
            name: Mapped[str] = mapped_column(String(20))
            note: Mapped[str] = mapped_column(String(20), default="")
            tags: Mapped[list[Tag]] = relationship(secondary=links, back_populates="items")

        self.Base, self.Tag, self.Item = Base, Tag, Item


@pytest.fixture
def receivers() -> Iterator[list[int]]:
    """One receiver on every model signal, counting its calls."""
    calls = [0]

    def count(**kwargs: Any) -> None:
        calls[0] += 1

    for signal in SIGNALS:
        signal.connect(count)
    yield calls
    for signal in SIGNALS:
        signal.disconnect(count)


def _life_cycle(engine: Any, m: Models, size: int) -> None:
    with Session(engine) as session:
        tags = [m.Tag(name=f"t{i}") for i in range(10)]
        session.add_all(m.Item(name=f"i{i}", tags=[tags[i % 10]]) for i in range(size))
        session.commit()
    with Session(engine, expire_on_commit=False) as session:
        items = session.scalars(select(m.Item).options(selectinload(m.Item.tags))).all()
        tags = list(session.scalars(select(m.Tag)).all())
        for index, item in enumerate(items):
            item.name = f"n{index}"
            if index % 10 == 0:
                item.note = "withheld"
                save(session, item, update_fields=["name"], flush=False)
            if index % 7 == 0:
                item.tags.append(tags[(index + 1) % 10])
        session.commit()
        for item in items:
            session.delete(item)
        for tag in tags:
            session.delete(tag)
        session.commit()
        del items, tags


def _retained(size: int) -> tuple[int, int]:
    """Bytes still allocated after a life cycle of ``size`` objects: (tidings', everything)."""
    m = Models()  # a fresh registry per call: the models are named the same
    engine = create_engine("sqlite://", poolclass=StaticPool)
    m.Base.metadata.create_all(engine)
    try:
        _life_cycle(engine, m, 100)  # fills SQLAlchemy's and tidings' caches
        gc.collect()
        tracemalloc.start(8)
        try:
            # A first traced life cycle of the same size settles what is allocated once per
            # size (a dict grown to hold ``size`` entries keeps its table when emptied); only
            # what the second one leaves behind counts.
            _life_cycle(engine, m, size)
            gc.collect()
            before = tracemalloc.take_snapshot()
            _life_cycle(engine, m, size)
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
    finally:
        engine.dispose()
    assert not _m2m_record._logs, "many-to-many operations of closed sessions are still recorded"
    stats = after.compare_to(before, "traceback")
    ours = sum(s.size_diff for s in stats if any(_is_ours(f.filename) for f in s.traceback))
    return ours, sum(s.size_diff for s in stats)


def _is_ours(filename: str) -> bool:
    return filename.startswith(PACKAGE)


def test_a_closed_session_leaves_nothing_behind(receivers: list[int]) -> None:
    """After a life cycle of 500 objects, what is still allocated does not grow with them."""
    with apps.isolated():
        # Python 3.10 still allocates some tables once per size in a first run (up to 8 KiB).
        _retained(500)
    ours, total = _retained(500)
    assert receivers[0] > 3 * 500
    # A few allocations kept by the interpreter's free lists or a fresh empty dict are fine;
    # keeping even the smallest object per object would be 14 KiB.
    assert ours < 4 * 1024, f"tidings retained {ours} bytes"
    assert total < 64 * 1024, f"{total} bytes retained in all"


@pytest.mark.stress
def test_a_closed_session_of_100_000_objects_leaves_nothing_behind(receivers: list[int]) -> None:
    """After a life cycle of 100,000 objects, what is still allocated does not grow with them."""
    ours, total = _retained(100_000)
    assert ours < 16 * 1024, f"tidings retained {ours} bytes"
    assert total < 64 * 1024, f"{total} bytes retained in all"
