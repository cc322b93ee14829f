"""Changes that ``save(update_fields=...)`` leaves unwritten, and pending again afterwards.

Django's ``save(update_fields=[...])`` writes only the listed fields; the other changed values
stay in memory and a later full ``save()`` writes them. SQLAlchemy writes every changed
attribute of a dirty object, so for the flush that saves the object the changes of the other
fields are *withheld*: each value is made the committed one (the flush sees no change), and
the old committed value is kept here. When the ``flush()`` call is over (after the further
flushes of what receivers left pending) the changes are *shown* again: the attribute is
flagged modified with its old committed value back, so history, ``changes`` and the next
flush see it exactly as before. A full ``save()`` of the object later in the same ``flush()``
call shows them at once, so that save writes them, as Django's would.

A rollback expires the objects, and with them every unwritten value, withheld or not: the
record is then dropped without showing anything.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm.attributes import flag_modified, set_committed_value
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.orm.state import InstanceState

from tidings.sqlalchemy._fields import field_keys, read_history

__all__ = ["Withheld"]


class Withheld:
    """The changes withheld from the flushes of one ``flush()`` call of one session."""

    __slots__ = ("_old",)

    def __init__(self) -> None:
        # state -> {attribute key: its committed value before it was withheld}
        self._old: dict[InstanceState[Any], dict[str, Any]] = {}

    def hide(self, state: InstanceState[Any], fields: frozenset[str]) -> None:
        """Withhold the changes of ``state``'s fields not in ``fields`` from the flush."""
        obj = state.obj()
        if obj is None:
            return
        for key in field_keys(state.mapper):
            if key in fields:
                continue
            history = read_history(state, key, load=True)
            if not history.added:
                continue
            old = history.deleted[0] if history.deleted else NO_VALUE
            self._old.setdefault(state, {}).setdefault(key, old)
            set_committed_value(obj, key, state.dict[key])

    def show(self, state: InstanceState[Any], fields: frozenset[str] | None) -> None:
        """Make the withheld changes of ``state`` in ``fields`` (None: all) pending again."""
        old = self._old.get(state)
        if not old:
            return
        for key in [key for key in old if fields is None or key in fields]:
            _pending(state, key, old.pop(key))
        if not old:
            del self._old[state]

    def show_all(self) -> None:
        """Make every withheld change pending again."""
        old, self._old = self._old, {}
        for state, keys in old.items():
            for key, value in keys.items():
                _pending(state, key, value)


def _pending(state: InstanceState[Any], key: str, old: Any) -> None:
    obj = state.obj()
    if obj is None or key not in state.dict:
        return  # collected or expired since: nothing unwritten is left to show
    flag_modified(obj, key)
    if old is not NO_VALUE:
        # flag_modified records "old value unknown"; put back the one known before.
        state.committed_state[key] = old
