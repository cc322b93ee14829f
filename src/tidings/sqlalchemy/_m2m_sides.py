"""The two sides of a many-to-many relationship: which one declares it, what each reports.

``reverse`` is False on the side that declares the relationship: the one holding
``backref=``; for a ``back_populates`` pair, the side whose foreign key comes first in the
association table (Django's through tables list the declaring model first). The ``info`` entry
:data:`REVERSE_INFO_KEY` of a ``relationship()`` overrides the rule. ``sender`` is the
association :class:`~sqlalchemy.schema.Table`, or the mapped class whose table it is (the
association-object pattern). A side is resolved once, when first used, and cached weakly.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm.relationships import RelationshipProperty
from sqlalchemy.schema import Table

from tidings.sqlalchemy._compat import reverse_properties

__all__ = ["REVERSE_INFO_KEY", "Side", "side_of", "writes_secondary"]

REVERSE_INFO_KEY = "tidings.m2m.reverse"
"""``relationship(info={REVERSE_INFO_KEY: True})`` marks the side reported as ``reverse``."""


@dataclass(eq=False)
class Side:
    """What one many-to-many relationship reports: resolved once, when first used."""

    prop: RelationshipProperty[Any]
    sender: object
    model: type
    reverse: bool
    # The declaring side of the pair: links are keyed on it, so both sides agree on a link.
    forward: RelationshipProperty[Any]


_sides: weakref.WeakKeyDictionary[RelationshipProperty[Any], Side] = weakref.WeakKeyDictionary()


def writes_secondary(prop: RelationshipProperty[Any]) -> bool:
    """Whether ``prop`` writes association rows (a many-to-many side that is not view-only)."""
    # ``secondary`` is set when the property is initialised: a partner on a mapper still
    # being configured has none yet and is handled by its own mapper's event.
    return getattr(prop, "secondary", None) is not None and not prop.viewonly


def side_of(prop: RelationshipProperty[Any]) -> Side:
    """Return the :class:`Side` of the configured many-to-many relationship ``prop``."""
    side = _sides.get(prop)
    if side is None:
        side = _sides.setdefault(prop, _resolve_side(prop))
    return side


def _resolve_side(prop: RelationshipProperty[Any]) -> Side:
    reverse = _is_reverse(prop)
    partner = _partner(prop)
    forward = partner if reverse and partner is not None else prop
    return Side(
        prop=prop,
        sender=_sender_of(prop),
        model=prop.mapper.class_,
        reverse=reverse,
        forward=forward,
    )


def _partner(prop: RelationshipProperty[Any]) -> RelationshipProperty[Any] | None:
    for other in reverse_properties(prop):
        if writes_secondary(other) and other.secondary is prop.secondary:
            return other
    return None


def _is_reverse(prop: RelationshipProperty[Any]) -> bool:
    explicit = prop.info.get(REVERSE_INFO_KEY)
    if explicit is not None:
        return bool(explicit)
    partner = _partner(prop)
    if partner is None:
        return False
    explicit = partner.info.get(REVERSE_INFO_KEY)
    if explicit is not None:
        return not explicit
    if prop.backref is not None or partner.backref is not None:
        return prop.backref is None
    # Two back_populates sides: the one whose foreign key comes first in the table declares.
    return _column_rank(partner) < _column_rank(prop)


def _column_rank(prop: RelationshipProperty[Any]) -> tuple[int, str, str]:
    columns = list(prop.secondary.columns) if isinstance(prop.secondary, Table) else []
    positions = [
        columns.index(column)
        for _, column in prop.synchronize_pairs
        if any(column is c for c in columns)
    ]
    # Equal ranks only for a contrived pair sharing its columns: fall back to the names.
    return (min(positions, default=len(columns)), prop.parent.class_.__name__, prop.key)


def _sender_of(prop: RelationshipProperty[Any]) -> object:
    table = prop.secondary
    for mapper in prop.parent.registry.mappers:
        if mapper.local_table is table and not mapper.inherits:
            return mapper.class_
    return table
