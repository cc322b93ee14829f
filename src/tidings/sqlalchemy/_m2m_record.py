"""Record the operations on many-to-many collections between flushes.

The collection operations (``append``, ``remove``, assignment, ``clear()``, ``add``/``discard``
on sets) are recorded as they happen, on the side the call was made on (the backref "echo" on
the other side is ignored). Nothing is recorded while ``m2m_changed`` has no receiver for the
association's sender. At flush, :func:`take` hands what was recorded, with each collection's
history, to the planner (:mod:`tidings.sqlalchemy._m2m_plan`).

The records live in a lock-guarded weak dictionary keyed by the object's state, so sessions in
different threads do not interfere and unflushed objects are simply forgotten; a rollback, an
expiry or an object leaving its session discards them.
"""

from __future__ import annotations

import itertools
import sys
import threading
import weakref
from collections.abc import Collection as AnyCollection
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, cast

from sqlalchemy import event
from sqlalchemy.orm import Session
from sqlalchemy.orm import attributes as sa_attributes
from sqlalchemy.orm.attributes import OP_BULK_REPLACE, AttributeEventToken
from sqlalchemy.orm.base import PASSIVE_NO_INITIALIZE
from sqlalchemy.orm.relationships import RelationshipProperty
from sqlalchemy.orm.state import InstanceState

from tidings.models import m2m_changed
from tidings.sqlalchemy._m2m_plan import Collection
from tidings.sqlalchemy._m2m_sides import Side, side_of

__all__ = [
    "after_soft_rollback",
    "any_recorded",
    "forget_object",
    "listen",
    "on_expire",
    "take",
]

# How far up the stack a remove event may be from the ``clear()`` that caused it: list and
# dict ``clear`` are 4 frames away, set ``clear`` (which calls ``remove``) 7.
_CLEAR_FRAME_DEPTH = 12

_lock = threading.Lock()
_sequence = itertools.count()


@dataclass(eq=False)
class _Track:
    """The operations recorded for one collection (one object, one relationship) since a flush."""

    side: Side
    first: int
    # target state -> (sequence number, True for append) of its last operation. Weak, as
    # ``_logs`` holds tracks strongly: a track naming its own key (self-referential links)
    # or a key naming this one back would otherwise keep the states alive forever.
    last: weakref.WeakKeyDictionary[InstanceState[Any], tuple[int, bool]] = field(
        default_factory=weakref.WeakKeyDictionary
    )
    # Sequence number of the first clear() that removed something, and what clear() removed.
    first_clear: int | None = None
    cleared: weakref.WeakSet[InstanceState[Any]] = field(default_factory=weakref.WeakSet)
    # Sequence number of the latest assignment: its removals are ordered at the assignment,
    # before its appends, as Django's set() removes before it adds.
    replaced_at: int | None = None


_logs: weakref.WeakKeyDictionary[InstanceState[Any], dict[Side, _Track]] = (
    weakref.WeakKeyDictionary()
)
_listened: weakref.WeakSet[RelationshipProperty[Any]] = weakref.WeakSet()


def any_recorded() -> bool:
    """Whether any collection operation is recorded (in any session)."""
    return bool(_logs)


def listen(prop: RelationshipProperty[Any]) -> None:
    """Record the operations on the many-to-many relationship ``prop`` (once per property)."""
    with _lock:
        if prop in _listened:
            return
        _listened.add(prop)
    attribute = getattr(prop.parent.class_, prop.key)
    event.listen(attribute, "append", _make_listener(prop, appended=True), propagate=True)
    event.listen(attribute, "remove", _make_listener(prop, appended=False), propagate=True)

    def on_replace(target: object, values: object, initiator: AttributeEventToken) -> None:
        side = side_of(prop)
        if cast(object, initiator.parent_token) is prop and m2m_changed.has_listeners(side.sender):
            _track(sa_attributes.instance_state(target), side).replaced_at = next(_sequence)

    event.listen(attribute, "bulk_replace", on_replace, propagate=True)


def _make_listener(prop: RelationshipProperty[Any], *, appended: bool) -> Any:
    resolved: list[Side] = []

    def on_change(target: object, value: object, initiator: AttributeEventToken) -> None:
        # The backref echo on the other side carries the originating side's token.
        # The token's ``parent_token`` is the relationship property itself (typed loosely).
        if cast(object, initiator.parent_token) is not prop or value is None:
            return
        if not resolved:
            resolved.append(side_of(prop))
        side = resolved[0]
        if not m2m_changed.has_listeners(side.sender):
            return
        state = sa_attributes.instance_state(target)
        clearing = not appended and _inside_clear(state, prop.key)
        replacing = initiator.op is OP_BULK_REPLACE
        _record(state, side, sa_attributes.instance_state(value), appended, clearing, replacing)

    return on_change


def _inside_clear(state: InstanceState[Any], key: str) -> bool:
    """Whether this remove event comes from ``clear()`` called on the collection itself.

    SQLAlchemy reports ``clear()`` as one remove event per member, like single removals; the
    instrumented ``clear`` method of the collection's class is on the stack only in the
    first case.
    """
    collection = state.dict.get(key)
    clear = getattr(type(collection), "clear", None)
    code = getattr(clear, "__code__", None)
    if code is None:
        return False
    frame: FrameType | None = sys._getframe(2)
    for _ in range(_CLEAR_FRAME_DEPTH):
        if frame is None:
            return False
        if frame.f_code is code and frame.f_locals.get("self") is collection:
            return True
        frame = frame.f_back
    return False


def _track(state: InstanceState[Any], side: Side) -> _Track:
    with _lock:
        tracks = _logs.get(state)
        if tracks is None:
            tracks = _logs[state] = {}
        track = tracks.get(side)
        if track is None:
            track = tracks[side] = _Track(side, next(_sequence))
        return track


def _record(
    state: InstanceState[Any],
    side: Side,
    target: InstanceState[Any],
    appended: bool,
    clearing: bool,
    replacing: bool,
) -> None:
    track = _track(state, side)
    seq = next(_sequence)
    if replacing and not appended and track.replaced_at is not None:
        seq = track.replaced_at
    with _lock:
        track.last[target] = (seq, appended)
        if clearing:
            if track.first_clear is None:
                track.first_clear = seq
            track.cleared.add(target)


def after_soft_rollback(session: Session, previous_transaction: object) -> None:
    """Session ``after_soft_rollback``: forget what the session's objects recorded."""
    # A rollback expires the objects and their history: what was recorded is void. Objects
    # the rollback evicts from the session are handled by ``forget_object``.
    if not _logs:
        return
    with _lock:
        for state in [s for s in _logs if s.session_id == session.hash_key]:
            del _logs[state]
        _shrink()


def on_expire(state: InstanceState[Any], keys: AnyCollection[str] | None) -> None:
    """Mapper ``expire``: expiring a collection discards its unflushed changes, and records."""
    if not _logs or state not in _logs:
        return
    with _lock:
        tracks = _logs.get(state, {})
        for side in [side for side in tracks if keys is None or side.prop.key in keys]:
            del tracks[side]


def forget_object(session: Session, instance: object) -> None:
    """Session ``*_to_transient``: an object leaving its session takes its records along."""
    if _logs:
        with _lock:
            _logs.pop(sa_attributes.instance_state(instance), None)


def _shrink() -> None:
    """Start a new, small ``_logs`` once it is empty (call with ``_lock`` held).

    A dict keeps the table of its largest size: without this, one session that changed
    100,000 collections would leave megabytes behind for the life of the process.
    """
    global _logs
    if not _logs:
        _logs = weakref.WeakKeyDictionary()


def take(session: Session, *, forget: bool) -> list[Collection[InstanceState[Any], Side]]:
    """Return the session's changed collections, each with its history at this flush.

    Args:
        session: The flushing session.
        forget: Whether to drop what was recorded (the flush is writing it), with the records
            of deleted objects (deleting an object deletes its links silently, as Django does).

    Returns:
        One :class:`~tidings.sqlalchemy._m2m_plan.Collection` per changed collection.
    """
    deleted = {sa_attributes.instance_state(obj) for obj in session.deleted}
    with _lock:
        found: list[tuple[InstanceState[Any], dict[Side, _Track]]] = []
        for obj in itertools.chain(session.new, session.dirty):
            state = sa_attributes.instance_state(obj)
            tracks = _logs.pop(state, None) if forget else _logs.get(state)
            if tracks:
                found.append((state, dict(tracks)))
        for state in deleted:
            if forget:
                _logs.pop(state, None)
        if forget:
            _shrink()
    collections = []
    for state, tracks in found:
        for side, track in tracks.items():
            history = state.get_history(side.prop.key, PASSIVE_NO_INITIALIZE)
            collections.append(
                Collection(
                    owner=state,
                    side=side,
                    first=track.first,
                    last=track.last,
                    first_clear=track.first_clear,
                    cleared=track.cleared,
                    unchanged=_states(history.unchanged),
                    deleted=_states(history.deleted),
                    added=_states(history.added),
                )
            )
    return collections


def _states(objects: Iterable[object] | None) -> list[InstanceState[Any]]:
    return [sa_attributes.instance_state(obj) for obj in objects or ()]
