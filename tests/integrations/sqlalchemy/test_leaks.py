"""A session's objects leave nothing behind in tidings once the session is closed.

Each check runs a whole life cycle (insert, load, update, ``save(update_fields=...)``, m2m
changes, delete, commit) with receivers on every model signal, first small to fill every cache,
then at the measured size, and counts the memory blocks still allocated afterwards
(``sys.getallocatedblocks()``, after a full collection). Counting blocks costs nothing while the
objects live, unlike tracing every allocation: a leak of one small object per object of the
session shows as at least that many blocks, whatever allocated it. The suite runs 2,000
objects, the ``stress`` version 100,000; a test leaks on purpose to show the check can fail.
"""

from __future__ import annotations

import gc
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
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

import tidings.models as tm
from tests.integrations.sqlalchemy.m2m_models import link_table
from tidings.sqlalchemy import _m2m_record, instrument, save

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


#: Blocks a life cycle may leave allocated: a leak of one block per 20 objects exceeds it.
PER_OBJECT = 1 / 20


@dataclass(frozen=True)
class Growth:
    """What one life cycle left allocated."""

    blocks: int  # memory blocks (sys.getallocatedblocks())
    objects: Counter[str]  # garbage-collected objects by type, those that grew only

    def describe(self) -> str:
        """The figures, for an assertion message."""
        top = ", ".join(f"{name} +{count}" for name, count in self.objects.most_common(5))
        return f"{self.blocks} blocks more; tracked objects: {top or 'none more'}"


def _census() -> Counter[str]:
    return Counter(type(o).__qualname__ for o in gc.get_objects())


def _growth(size: int) -> Growth:
    """What a life cycle of ``size`` objects leaves allocated, after a warm-up cycle.

    The warm-up is as large as the measured cycle: SQLAlchemy compiles and caches a statement
    per batch shape (an INSERT of many rows is sent in pages), so a smaller warm-up leaves
    caches that fill once during the measured cycle (about 400 blocks on SQLAlchemy 2.0 under
    Python 3.10), which the bound would mistake for a leak.
    """
    m = Models()  # a fresh registry per call: the models are named the same
    engine = create_engine("sqlite://", poolclass=StaticPool)
    m.Base.metadata.create_all(engine)
    try:
        _life_cycle(engine, m, size)  # fills SQLAlchemy's and tidings' caches
        gc.collect()
        objects = _census()
        blocks = sys.getallocatedblocks()
        _life_cycle(engine, m, size)
        gc.collect()
        blocks = sys.getallocatedblocks() - blocks
        grown = _census()
        grown.subtract(objects)
    finally:
        engine.dispose()
    assert not _m2m_record._logs, "many-to-many operations of closed sessions are still recorded"
    return Growth(blocks, +grown)


def test_a_closed_session_leaves_nothing_behind(receivers: list[int]) -> None:
    """After a life cycle of 2,000 objects, fewer blocks than one per 20 objects remain."""
    growth = _growth(2_000)
    assert receivers[0] > 3 * 2_000
    assert growth.blocks < 2_000 * PER_OBJECT, growth.describe()


def test_the_check_sees_one_small_object_kept_per_object(receivers: list[int]) -> None:
    """A receiver keeping one small object per deleted object fails the same bound."""
    kept: list[object] = []

    def keep(**kwargs: Any) -> None:
        kept.append(object())

    tm.post_delete.connect(keep)
    try:
        growth = _growth(1_000)
    finally:
        tm.post_delete.disconnect(keep)
    assert len(kept) > 1_000
    assert growth.blocks >= 1_000, growth.describe()


@pytest.mark.stress
def test_a_closed_session_of_100_000_objects_leaves_nothing_behind(receivers: list[int]) -> None:
    """After a life cycle of 100,000 objects, fewer blocks than one per 20 objects remain."""
    growth = _growth(100_000)
    assert receivers[0] > 3 * 100_000
    assert growth.blocks < 100_000 * PER_OBJECT, growth.describe()
