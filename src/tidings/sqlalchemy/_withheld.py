"""The changes ``save(update_fields=...)`` leaves unwritten, until a later ``save()`` writes them.

Django's ``save(update_fields=[...])`` writes only the listed fields; the other changed values
stay in memory, and the next ``save()`` that covers them writes them. Nothing else does: a
commit writes no field a save left out. SQLAlchemy writes every changed attribute of a dirty
object at every flush, so the changes of the unlisted fields are *withheld*: the in-memory
value is made the committed one (no flush sees a change) and the old committed value is kept
in the state's ``info``, so the record goes with the object. A later ``save()`` listing the
field (or a full one) *shows* the change again before its flush: the attribute is flagged
modified with its old committed value back, so that flush writes it and ``changes`` reports
``(old, new)`` as if it had never been withheld.

A record is valid only while the attribute still holds the withheld value. Setting the
attribute again makes it an ordinary change (its old value is put back first, so ``changes``
reports the value the row holds); expiring or reloading it (a rollback, a commit with
``expire_on_commit``, ``refresh()``) discards the unwritten value, withheld or not, as it
discards any in-memory value.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm.attributes import flag_modified, set_committed_value
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.orm.state import InstanceState

from tidings.sqlalchemy._compat import committed_state
from tidings.sqlalchemy._fields import field_keys, read_history

__all__ = ["hide", "settle", "show"]

#: Key of ``InstanceState.info``: {attribute key: (committed value before it was withheld,
#: the withheld value)}. Kept on the state, it lives exactly as long as the object.
_KEY = "tidings.withheld"

# Whether anything was ever withheld: until then no state's ``info`` is even looked at.
_used = False


def _record(state: InstanceState[Any]) -> dict[str, tuple[Any, Any]] | None:
    if not _used:
        return None
    record: dict[str, tuple[Any, Any]] | None = state.info.get(_KEY)
    return record


def hide(state: InstanceState[Any], fields: frozenset[str]) -> list[str]:
    """Withhold the changes of ``state``'s fields not in ``fields``; return their keys."""
    global _used
    obj = state.obj()
    if obj is None:
        return []
    hidden = []
    for key in field_keys(state.mapper):
        if key in fields:
            continue
        history = read_history(state, key, load=True)
        if not history.added:
            continue
        value = state.dict[key]
        old = history.deleted[0] if history.deleted else NO_VALUE
        _used = True
        record = state.info.setdefault(_KEY, {})
        # Withheld again by a later partial save: the row still holds the first old value.
        record[key] = (record.get(key, (old,))[0], value)
        set_committed_value(obj, key, value)
        hidden.append(key)
    return hidden


def show(state: InstanceState[Any], keys: frozenset[str] | list[str] | None) -> None:
    """Make the withheld changes of ``state``'s ``keys`` (None: all) pending for the flush."""
    settle(state)
    record = _record(state)
    obj = state.obj()
    if not record or obj is None:
        return
    for key in [key for key in record if keys is None or key in keys]:
        old, _ = record.pop(key)
        flag_modified(obj, key)
        if old is not NO_VALUE:
            # flag_modified records "old value unknown"; put back the one the row holds.
            committed_state(state)[key] = old
    if not record:
        del state.info[_KEY]


def settle(state: InstanceState[Any]) -> None:
    """Drop the records of ``state`` whose attribute no longer holds the withheld value.

    An attribute set again since is an ordinary change from the value the row holds; one
    expired or reloaded has lost the unwritten value.
    """
    record = _record(state)
    if not record:
        return
    for key, (old, value) in list(record.items()):
        if state.dict.get(key, NO_VALUE) is value:
            continue
        del record[key]
        committed = committed_state(state)
        if old is not NO_VALUE and key in state.dict and committed.get(key, NO_VALUE) is value:
            committed[key] = old
    if not record:
        del state.info[_KEY]
