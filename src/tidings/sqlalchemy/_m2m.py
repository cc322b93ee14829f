"""``m2m_changed`` for SQLAlchemy many-to-many collections (``relationship(secondary=...)``).

Django sends ``m2m_changed`` around the SQL of each ``add()``/``remove()``/``clear()`` call.
SQLAlchemy changes collections in memory and writes the association rows at the next flush, so
this module sends the signal per flush, for the *net* change of each collection since the
previous flush:

* The collection operations (``append``, ``remove``, assignment, ``clear()``, ``add``/
  ``discard`` on sets) are recorded as they happen, on the side the call was made on (the
  backref "echo" on the other side is ignored). Nothing is recorded while ``m2m_changed`` has no
  receiver for the association's sender.
* At flush, each changed collection gets the ``pre_clear``/``post_clear`` pair
  (``pk_set=None``) if ``.clear()`` removed linked objects, the ``pre_remove``/``post_remove``
  pair for the other objects whose link is deleted, and the ``pre_add``/``post_add`` pair for
  the objects whose link is inserted, ordered by the operations that made them. Replayed in
  that order on the links before the flush, the signals give exactly the links after it, and
  none is a no-op: an object appended and removed again, or appended while already there,
  sends nothing.
* ``pre_*`` is sent in ``before_flush``, before the association rows are written, when every
  primary key involved is known. When the flush itself must INSERT the instance or a target
  (its primary key does not exist yet), ``pre_*`` is sent after the flush, right before
  ``post_*``. ``post_*`` is sent in ``after_flush_postexec``: the rows are written, the
  transaction is still open, and receivers may use the session; what they leave pending is
  flushed at once, inside the same ``flush()`` call (:mod:`tidings.sqlalchemy._session`).
* ``reverse`` is False on the side that declares the relationship: the one holding
  ``backref=``; for a ``back_populates`` pair, the side whose foreign key comes first in the
  association table (Django's through tables list the declaring model first). The ``info``
  entry ``"tidings.m2m.reverse"`` of a ``relationship()`` overrides the rule.
* ``sender`` is the association :class:`~sqlalchemy.schema.Table`, or the mapped class whose
  table it is (the association-object pattern).

Receivers run synchronously inside SQLAlchemy's flush (under ``AsyncSession`` too, where async
receivers are awaited through :mod:`tidings.sqlalchemy._send`); an exception aborts the flush.

This module wires the hooks and sends. The parts: :mod:`~tidings.sqlalchemy._m2m_sides` finds
the two sides of a relationship (``reverse``, ``sender``), :mod:`~tidings.sqlalchemy._m2m_record`
records the operations between flushes, and :mod:`~tidings.sqlalchemy._m2m_plan` (pure) plans
the sends of a flush from what was recorded.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Mapper, Session, UOWTransaction
from sqlalchemy.orm.state import InstanceState

from tidings.models import m2m_changed
from tidings.sqlalchemy import _m2m_record
from tidings.sqlalchemy._compat import reverse_properties
from tidings.sqlalchemy._m2m_plan import CLEAR, Change, plan
from tidings.sqlalchemy._m2m_sides import REVERSE_INFO_KEY, Side, writes_secondary
from tidings.sqlalchemy._send import send
from tidings.sqlalchemy._session import using_for

__all__ = [
    "REVERSE_INFO_KEY",
    "after_flush",
    "after_flush_postexec",
    "before_flush",
    "instrument_mapper",
]

# Keys of ``UOWTransaction.attributes``, private to this module.
_PRE_SENT = "tidings.m2m.pre_sent"
_PLAN = "tidings.m2m.plan"

_Planned = Change[InstanceState[Any], Side]


def instrument_mapper(mapper: Mapper[Any]) -> None:
    """Make the many-to-many relationships of ``mapper`` send ``m2m_changed``.

    Relationships are instrumented once the mapper is configured (their ``secondary`` and
    backrefs are resolved then): at once if it already is, else from its ``mapper_configured``
    event. Calling it again for the same mapper does nothing more.

    Args:
        mapper: A mapper being instrumented by :func:`tidings.sqlalchemy.instrument`.
    """
    # Expiring a collection discards its unflushed changes: what was recorded goes with them.
    event.listen(mapper, "expire", _m2m_record.on_expire, raw=True)
    if mapper.configured:
        _instrument_relationships(mapper)
    else:
        event.listen(mapper, "mapper_configured", _instrument_relationships, once=True)


def _instrument_relationships(mapper: Mapper[Any], class_: object = None) -> None:
    for prop in mapper.relationships:
        # A backref generated on another mapper appears here only through its partner.
        for candidate in (prop, *reverse_properties(prop)):
            if writes_secondary(candidate):
                _m2m_record.listen(candidate)


def before_flush(session: Session, context: UOWTransaction) -> None:
    """Flush hook: ``pre_*`` of the changes whose primary keys are all known."""
    if not _m2m_record.any_recorded():
        return
    sent: set[tuple[Any, ...]] = set()
    context.attributes[_PRE_SENT] = sent
    for change in plan(_m2m_record.take(session, forget=False)):
        if _ready(change):
            _send(change, "pre", session)
            sent.add(_key(change))


def after_flush(session: Session, context: UOWTransaction) -> None:
    """Flush hook: plan the sends of the flush while history is still there."""
    # History is still there (it is reset before after_flush_postexec); primary keys of the
    # new objects are not registered yet, so the signals wait for the next hook.
    if _m2m_record.any_recorded():
        context.attributes[_PLAN] = plan(_m2m_record.take(session, forget=True))


def after_flush_postexec(session: Session, context: UOWTransaction) -> None:
    """Flush hook: the deferred ``pre_*``, then every ``post_*`` of the flush."""
    planned: list[_Planned] | None = context.attributes.pop(_PLAN, None)
    if not planned:
        return
    sent: set[tuple[Any, ...]] = context.attributes.get(_PRE_SENT, set())
    # Deferred pre_* first, so every pre_* of the flush still comes before every post_*.
    for change in planned:
        if _key(change) not in sent:
            _send(change, "pre", session)
    for change in planned:
        _send(change, "post", session)


def _key(change: _Planned) -> tuple[Any, ...]:
    """What tells the same change apart in ``before_flush`` and after the flush."""
    return (change.state, change.side.prop, change.action, frozenset(change.targets))


def _ready(change: _Planned) -> bool:
    """Whether every primary key involved is known (no INSERT pending)."""
    return change.state.key is not None and all(t.key is not None for t in change.targets)


def _send(change: _Planned, phase: str, session: Session) -> None:
    side = change.side
    pk_set = None if change.action == CLEAR else {_pk(target) for target in change.targets}
    send(
        m2m_changed,
        side.sender,
        instance=change.state.obj(),
        action=f"{phase}_{change.action}",
        reverse=side.reverse,
        model=side.model,
        pk_set=pk_set,
        using=using_for(session, change.state.mapper),
        raw=False,  # Django 6.1 added it (True only while loading fixtures)
    )


def _pk(state: InstanceState[Any]) -> Any:
    if state.key is not None:
        identity = state.key[1]
    else:
        identity = state.mapper.primary_key_from_instance(state.obj())
    return identity[0] if len(identity) == 1 else tuple(identity)
