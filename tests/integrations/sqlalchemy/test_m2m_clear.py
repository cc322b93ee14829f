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
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from sqlalchemy.orm.collections import attribute_keyed_dict

from tests.integrations.sqlalchemy.m2m_models import post_tag_models
from tidings.models import m2m_changed


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

    models = post_tag_models("clearing", collection_class=collection_class)
    Base, Post, Tag = models.Base, models.Post, models.Tag

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
