"""What a flush will write, read without loading anything once rows are written.

SQLAlchemy decides at flush time which rows an object's changes write; tidings must make the
same decisions in ``before_flush`` to send Django's signals, and must not load anything in the
later hooks:

* the *fields* of a row are its column attributes and the many-to-one relationships that
  write (the foreign key is in the row), like Django's concrete fields. The reverse side of a
  one-to-one (``User.profile``) and the collections write other rows: changing them is not a
  save of the object (:func:`field_keys`, :func:`fields_modified`, :func:`changes_of`);
* a relationship with "deferred history" (the reverse side of a one-to-one, a many-to-one not
  joined on the primary key) does not load its old value when it is set, and reading its
  history loads it whatever the passive flags. :func:`read_history` loads it only when asked
  (``before_flush``, nothing written yet) and keeps it as the committed value, as
  ``active_history`` would have done; later readers, the flush included, find it without a
  query. After the rows are written a load could bring back a row the flush just wrote and
  replace the object in the identity map, so it is never done there;
* the objects the flush deletes as orphans, or drops instead of inserting, are found with
  SQLAlchemy's own tests (:func:`removed_children`, :func:`expunged_by_flush`).
"""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy.orm import ColumnProperty, Mapper, RelationshipProperty, Session
from sqlalchemy.orm.attributes import History, get_history, instance_state
from sqlalchemy.orm.base import MANYTOONE, LoaderCallableStatus, PassiveFlag
from sqlalchemy.orm.state import InstanceState

from tidings.sqlalchemy._compat import (
    committed_state,
    has_parent,
    is_orphan,
    orphaned_outside_of_session,
)

__all__ = [
    "changes_of",
    "expunged_by_flush",
    "field_keys",
    "fields_modified",
    "read_history",
    "removed_children",
]


def field_keys(mapper: Mapper[Any]) -> tuple[str, ...]:
    """Return the keys of ``mapper``'s attributes that are fields of its row, in mapper order.

    Those are the column attributes and the many-to-one relationships that write (their
    foreign key is in this row), like Django's concrete fields. One-to-many and many-to-many
    relationships, including the reverse side of a one-to-one (``User.profile``), write other
    rows or an association table: changing them is not a save of this object.
    """
    keys = _field_keys.get(mapper)
    if keys is None:
        keys = _field_keys[mapper] = tuple(
            key for key, prop in mapper.attrs.items() if _is_field(prop)
        )
    return keys


_field_keys: weakref.WeakKeyDictionary[Mapper[Any], tuple[str, ...]] = weakref.WeakKeyDictionary()


def _is_field(prop: object) -> bool:
    if isinstance(prop, ColumnProperty):
        return True
    return (
        isinstance(prop, RelationshipProperty) and prop.direction is MANYTOONE and not prop.viewonly
    )


def read_history(
    state: InstanceState[Any],
    key: str,
    *,
    load: bool,
    passive: PassiveFlag = PassiveFlag.NO_CHANGE,
) -> History:
    """Return the history of ``state``'s attribute ``key``; never load unless ``load``.

    A relationship SQLAlchemy keeps with "deferred history" (the reverse side of a one-to-one,
    a many-to-one not joined on the primary key) does not load its old value when it is set;
    reading its history loads it, whatever the passive flags, and so does the flush itself.
    With ``load`` (``before_flush``: nothing is written yet) it is loaded here and recorded
    as the committed value, as ``active_history`` would have done when it was set: later
    readers, the flush included, then find it without another query. Without ``load`` (after
    the rows are written, when a load would bring back rows the flush just wrote), the old
    value is reported as unknown. Other attributes are read with ``passive``, by default as
    ``Session.is_modified()`` reads them: no loader callable and no SQL.
    """
    committed = committed_state(state)
    if committed.get(key) is LoaderCallableStatus.PASSIVE_NO_RESULT:
        if not (load and state.has_identity):
            return History([state.dict.get(key)], (), ())
        history = state.get_history(key, _FLUSH_HISTORY)
        committed[key] = (*history.deleted, *history.unchanged, None)[0]
        return history
    return get_history(state.obj(), key, passive=passive)


#: How SQLAlchemy's flush reads a relationship's history.
_FLUSH_HISTORY = PassiveFlag.PASSIVE_NO_INITIALIZE | PassiveFlag.INCLUDE_PENDING_MUTATIONS


def changes_of(instance: Any, *, load: bool = False) -> dict[str, tuple[Any, Any]]:
    """Return ``{attribute: (old, new)}`` for the column and many-to-one attributes changed.

    ``old`` is None when the old value was never loaded (for example expired by a commit).

    Args:
        instance: A persistent instance.
        load: Load an old value that SQLAlchemy loads only at flush (see :func:`read_history`).
            Pass True only before any row of the flush is written; by default nothing is
            loaded, which is safe in any flush hook.
    """
    state = instance_state(instance)
    result: dict[str, tuple[Any, Any]] = {}
    for key in field_keys(state.mapper):
        history = read_history(state, key, load=load)
        if history.added or history.deleted:
            old = history.deleted[0] if history.deleted else None
            new = history.added[0] if history.added else None
            result[key] = (old, new)
    return result


def fields_modified(state: InstanceState[Any]) -> bool:
    """Tell whether the flush will UPDATE this object's row.

    That is ``Session.is_modified()`` restricted to the fields (it also counts the reverse side
    of a one-to-one).
    """
    if not state.modified:
        return False
    for key in field_keys(state.mapper):
        history = read_history(state, key, load=True)
        if history.added or history.deleted:
            return True
    return False


def expunged_by_flush(state: InstanceState[Any]) -> bool:
    """Tell whether the flush will expunge this pending object instead of inserting it.

    This is the test of ``Session._flush()``: a pending orphan is dropped only when it was
    detached from its delete-orphan parent while that parent was outside the session. Any
    other pending orphan (say, a child added with only its foreign-key value set) is inserted.
    """
    # The flag first: it is almost always False, and this runs for every pending object.
    return orphaned_outside_of_session(state) and not state.has_identity and is_orphan(state)


def removed_children(session: Session) -> list[Any]:
    """Return the persistent children the flush deletes as orphans of a changed relationship.

    This is the test of SQLAlchemy's dependency processors for a ``delete-orphan``
    relationship: each object in its history's ``deleted`` that no longer has a parent. It
    finds the orphans whose removal did not mark them dirty, above all the old value of a
    one-to-one (``user.profile = None`` or ``= Profile()``) that was never loaded.

    Such an old value is loaded here, in ``before_flush``, before anything is written (the
    flush would load it a moment later for the same test), and kept as the committed value
    (see :func:`read_history`), which also keeps the object alive until the flush is over: the
    identity map holds it only weakly.
    """
    found: list[Any] = []
    for obj in (*session.new, *session.dirty):
        state = instance_state(obj)
        for key in _delete_orphan_keys(state.mapper):
            history = read_history(state, key, load=True, passive=_FLUSH_HISTORY)
            for child in history.deleted:
                if child is None:
                    continue
                child_state = instance_state(child)
                if child_state.has_identity and has_parent(state, key, child_state) is False:
                    found.append(child)
    return found


def _delete_orphan_keys(mapper: Mapper[Any]) -> tuple[str, ...]:
    keys = _orphan_keys.get(mapper)
    if keys is None:
        keys = _orphan_keys[mapper] = tuple(
            rel.key for rel in mapper.relationships if rel.cascade.delete_orphan
        )
    return keys


_orphan_keys: weakref.WeakKeyDictionary[Mapper[Any], tuple[str, ...]] = weakref.WeakKeyDictionary()
