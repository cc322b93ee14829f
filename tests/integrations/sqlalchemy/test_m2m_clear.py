"""clear() told apart from single removals, for every kind of collection.

SQLAlchemy reports ``collection.clear()`` as one remove event per member, exactly like single
removals; tidings tells them apart by finding the collection's own ``clear`` on the call stack
(``tidings.sqlalchemy._m2m_record``). These tests are the alarm for that dependency on
SQLAlchemy's internals: if a release calls the events from elsewhere, ``pre_clear`` turns into
``pre_remove`` here first. Each send also carries ``raw=False``, the argument Django 6.1 added
to ``m2m_changed`` (True only while loading fixtures, which SQLAlchemy has not).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Column, ForeignKey, Table, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from sqlalchemy.orm.collections import attribute_keyed_dict

from tidings.models import m2m_changed
from tidings.sqlalchemy import instrument


class _Listish(list[Any]):
    """A user-defined list collection."""


KINDS: dict[str, tuple[Any, Callable[[Any, list[Any]], None], Callable[[Any, Any], None]]] = {
    "list": (list, lambda c, items: c.extend(items), lambda c, item: c.remove(item)),
    "set": (set, lambda c, items: c.update(items), lambda c, item: c.discard(item)),
    "dict": (
        attribute_keyed_dict("name"),
        lambda c, items: c.update({i.name: i for i in items}),
        lambda c, item: c.pop(item.name),
    ),
    "list subclass": (_Listish, lambda c, items: c.extend(items), lambda c, item: c.remove(item)),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_clear_is_a_clear_and_removals_are_removals(kind: str) -> None:
    """clear() sends the clear pair; removing every member one by one sends remove pairs;
    raw is False."""
    collection_class, fill, remove = KINDS[kind]

    class Base(DeclarativeBase):
        __app_label__ = "clearing"

    instrument(Base)
    links = Table(
        "post_tags",
        Base.metadata,
        Column("post_id", ForeignKey("post.id"), primary_key=True),
        Column("tag_id", ForeignKey("tag.id"), primary_key=True),
    )

    class Tag(Base):
        __tablename__ = "tag"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]

    class Post(Base):
        __tablename__ = "post"
        id: Mapped[int] = mapped_column(primary_key=True)
        tags = relationship(Tag, secondary=links, collection_class=collection_class)

    actions: list[str] = []
    raws: set[Any] = set()

    def receiver(action: str, raw: Any, **kwargs: Any) -> None:
        actions.append(action)
        raws.add(raw)

    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    m2m_changed.connect(receiver)
    try:
        with Session(engine) as session:
            posts = [Post(id=1), Post(id=2)]
            tags = [Tag(id=1, name="red"), Tag(id=2, name="blue")]
            session.add_all([*posts, *tags])
            for post in posts:
                fill(post.tags, tags)
            session.flush()
            actions.clear()
            posts[0].tags.clear()
            session.flush()
            cleared = list(actions)
            actions.clear()
            for tag in tags:
                remove(posts[1].tags, tag)
            session.flush()
    finally:
        m2m_changed.disconnect(receiver)
        engine.dispose()
    assert cleared == ["pre_clear", "post_clear"]
    assert actions == ["pre_remove", "post_remove"]
    assert raws == {False}
