"""The order and ``origin`` of ``pre_delete``/``post_delete`` for the objects of one flush.

Django's collector (``django.db.models.deletion``) sends, for one ``delete()``:

* every ``pre_delete`` before any SQL, models sorted so that dependents come before what they
  depend on, instances of one model by ascending pk;
* then, per model in the same order, ``post_delete`` by descending pk;
* ``origin`` = the object whose ``delete()`` started it, for cascaded objects too;
* for a multi-table-inheritance child, a pair for each concrete parent model as well.

:func:`plan` reproduces this for the objects SQLAlchemy deletes in one flush. Models are ranked
by their tables' foreign-key dependencies. Roots are the deleted objects that no other deleted
object reaches through a ``delete`` cascade; each root is the origin of itself and of what it
reaches. A joined-table parent class gets its own entries, with the same (child) instance.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table
from sqlalchemy.orm import Mapper, object_mapper
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.schema import sort_tables_and_constraints

from tidings.sqlalchemy._registry import is_instrumented

__all__ = ["Entry", "plan"]

#: (sender class, instance, origin)
Entry = tuple[type, Any, Any]


def origins(objects: Iterable[Any]) -> dict[int, Any]:
    """Map ``id(obj)`` to the deleted object whose deletion cascaded to it (or itself)."""
    objects = list(objects)
    reached: set[int] = set()
    cascades: dict[int, list[Any]] = {}
    for obj in objects:
        mapper = object_mapper(obj)
        found = [child for child, *_ in mapper.cascade_iterator("delete", instance_state(obj))]
        cascades[id(obj)] = found
        reached.update(id(child) for child in found)
    result: dict[int, Any] = {}
    for obj in objects:
        if id(obj) not in reached:
            result.setdefault(id(obj), obj)
            for child in cascades[id(obj)]:
                result.setdefault(id(child), obj)
    for obj in objects:  # a delete cascade cycle has no root: each is its own origin
        result.setdefault(id(obj), obj)
    return result


def plan(objects: Iterable[Any]) -> tuple[list[Entry], list[Entry]]:
    """Return the ``pre_delete`` entries and the ``post_delete`` entries, each in send order.

    Args:
        objects: The instrumented objects deleted by one flush, in any order.
    """
    objects = list(objects)
    origin = origins(objects)
    groups: dict[type, list[Any]] = {}
    tables: dict[type, Table] = {}
    for obj in objects:
        mapper: Mapper[Any] = object_mapper(obj)
        groups.setdefault(mapper.class_, []).append(obj)
        tables.setdefault(mapper.class_, mapper.local_table)  # type: ignore[arg-type]
        child = mapper
        for parent in mapper.iterate_to_root():
            if parent is mapper:
                continue
            # Joined-table inheritance: the parent has a row of its own, which Django signals.
            if parent.local_table is not child.local_table and is_instrumented(parent.class_):
                groups.setdefault(parent.class_, []).append(obj)
                tables.setdefault(parent.class_, parent.local_table)  # type: ignore[arg-type]
            child = parent
    # Referenced tables come first (a foreign-key cycle is broken, without a warning); Django
    # deletes dependents first, hence the negated index.
    ordered_tables = [
        table
        for table, _ in sort_tables_and_constraints(set(tables.values()))  # type: ignore[no-untyped-call]
        if table is not None
    ]
    rank = {table: -index for index, table in enumerate(ordered_tables)}
    senders = sorted(groups, key=lambda cls: rank.get(tables[cls], 0))
    pre: list[Entry] = []
    post: list[Entry] = []
    for sender in senders:
        instances = sorted(groups[sender], key=_pk)
        pre.extend((sender, obj, origin[id(obj)]) for obj in instances)
        post.extend((sender, obj, origin[id(obj)]) for obj in reversed(instances))
    return pre, post


def _pk(obj: Any) -> tuple[Any, ...]:
    key = instance_state(obj).key
    return () if key is None else tuple(key[1])
