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
The recorded operations live in a lock-guarded weak dictionary keyed by the object's state, so
sessions in different threads do not interfere and unflushed objects are simply forgotten.
"""

from __future__ import annotations

import itertools
import sys
import threading
import weakref
from collections.abc import Collection
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, cast

from sqlalchemy import event
from sqlalchemy.orm import Mapper, Session, UOWTransaction
from sqlalchemy.orm import attributes as sa_attributes
from sqlalchemy.orm.attributes import OP_BULK_REPLACE, AttributeEventToken
from sqlalchemy.orm.base import PASSIVE_NO_INITIALIZE
from sqlalchemy.orm.relationships import RelationshipProperty
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.schema import Table

from tidings.models import m2m_changed
from tidings.sqlalchemy._compat import reverse_properties
from tidings.sqlalchemy._send import send
from tidings.sqlalchemy._session import add_flush_hook, using_for

__all__ = ["REVERSE_INFO_KEY", "instrument_mapper"]

REVERSE_INFO_KEY = "tidings.m2m.reverse"
"""``relationship(info={REVERSE_INFO_KEY: True})`` marks the side reported as ``reverse``."""

_ADD, _REMOVE, _CLEAR = "add", "remove", "clear"

# Keys of ``UOWTransaction.attributes``, private to this module.
_PRE_SENT = "tidings.m2m.pre_sent"
_PLAN = "tidings.m2m.plan"

# How far up the stack a remove event may be from the ``clear()`` that caused it: list and
# dict ``clear`` are 4 frames away, set ``clear`` (which calls ``remove``) 7.
_CLEAR_FRAME_DEPTH = 12

_lock = threading.Lock()
_sequence = itertools.count()
_installed = False


@dataclass(eq=False)
class _Side:
    """What one many-to-many relationship reports: resolved once, when first used."""

    prop: RelationshipProperty[Any]
    sender: object
    model: type
    reverse: bool
    # The declaring side of the pair: links are keyed on it, so both sides agree on a link.
    forward: RelationshipProperty[Any]


@dataclass(eq=False)
class _Track:
    """The operations recorded for one collection (one object, one relationship) since a flush."""

    side: _Side
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


@dataclass(eq=False)
class _Change:
    """One pre/post pair to send."""

    order: tuple[int, int]
    state: InstanceState[Any]
    side: _Side
    action: str
    targets: list[InstanceState[Any]]

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.state, self.side.prop, self.action, frozenset(self.targets))

    def ready(self) -> bool:
        """Whether every primary key involved is known (no INSERT pending)."""
        return self.state.key is not None and all(t.key is not None for t in self.targets)


_sides: weakref.WeakKeyDictionary[RelationshipProperty[Any], _Side] = weakref.WeakKeyDictionary()
_logs: weakref.WeakKeyDictionary[InstanceState[Any], dict[_Side, _Track]] = (
    weakref.WeakKeyDictionary()
)
_listened: weakref.WeakSet[RelationshipProperty[Any]] = weakref.WeakSet()


def instrument_mapper(mapper: Mapper[Any]) -> None:
    """Make the many-to-many relationships of ``mapper`` send ``m2m_changed``.

    Relationships are instrumented once the mapper is configured (their ``secondary`` and
    backrefs are resolved then): at once if it already is, else from its ``mapper_configured``
    event. Calling it again for the same mapper does nothing more.

    Args:
        mapper: A mapper being instrumented by :func:`tidings.sqlalchemy.instrument`.
    """
    _install_session_hooks()
    # Expiring a collection discards its unflushed changes: what was recorded goes with them.
    event.listen(mapper, "expire", _on_expire, raw=True)
    if mapper.configured:
        _instrument_relationships(mapper)
    else:
        event.listen(mapper, "mapper_configured", _instrument_relationships, once=True)


def _instrument_relationships(mapper: Mapper[Any], class_: object = None) -> None:
    for prop in mapper.relationships:
        # A backref generated on another mapper appears here only through its partner.
        for candidate in (prop, *reverse_properties(prop)):
            if _writes_secondary(candidate):
                _listen(candidate)


def _writes_secondary(prop: RelationshipProperty[Any]) -> bool:
    # ``secondary`` is set when the property is initialised: a partner on a mapper still
    # being configured has none yet and is handled by its own mapper's event.
    return getattr(prop, "secondary", None) is not None and not prop.viewonly


def _listen(prop: RelationshipProperty[Any]) -> None:
    with _lock:
        if prop in _listened:
            return
        _listened.add(prop)
    attribute = getattr(prop.parent.class_, prop.key)
    event.listen(attribute, "append", _make_listener(prop, appended=True), propagate=True)
    event.listen(attribute, "remove", _make_listener(prop, appended=False), propagate=True)

    def on_replace(target: object, values: object, initiator: AttributeEventToken) -> None:
        side = _side_of(prop)
        if cast(object, initiator.parent_token) is prop and m2m_changed.has_listeners(side.sender):
            _track(sa_attributes.instance_state(target), side).replaced_at = next(_sequence)

    event.listen(attribute, "bulk_replace", on_replace, propagate=True)


def _make_listener(prop: RelationshipProperty[Any], *, appended: bool) -> Any:
    resolved: list[_Side] = []

    def on_change(target: object, value: object, initiator: AttributeEventToken) -> None:
        # The backref echo on the other side carries the originating side's token.
        # The token's ``parent_token`` is the relationship property itself (typed loosely).
        if cast(object, initiator.parent_token) is not prop or value is None:
            return
        if not resolved:
            resolved.append(_side_of(prop))
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


def _track(state: InstanceState[Any], side: _Side) -> _Track:
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
    side: _Side,
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


def _side_of(prop: RelationshipProperty[Any]) -> _Side:
    side = _sides.get(prop)
    if side is None:
        side = _sides.setdefault(prop, _resolve_side(prop))
    return side


def _resolve_side(prop: RelationshipProperty[Any]) -> _Side:
    reverse = _is_reverse(prop)
    partner = _partner(prop)
    forward = partner if reverse and partner is not None else prop
    return _Side(
        prop=prop,
        sender=_sender_of(prop),
        model=prop.mapper.class_,
        reverse=reverse,
        forward=forward,
    )


def _partner(prop: RelationshipProperty[Any]) -> RelationshipProperty[Any] | None:
    for other in reverse_properties(prop):
        if _writes_secondary(other) and other.secondary is prop.secondary:
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


def _install_session_hooks() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    # The save/delete machinery owns the Session events; running inside it puts pre_* after
    # pre_save/pre_delete and post_* after post_save/post_delete, and lets it flush again
    # what post_* receivers leave pending.
    add_flush_hook("before_flush", _before_flush)
    add_flush_hook("after_flush", _after_flush)
    add_flush_hook("after_flush_postexec", _after_flush_postexec)
    event.listen(Session, "after_soft_rollback", _after_soft_rollback)
    event.listen(Session, "pending_to_transient", _forget)
    event.listen(Session, "persistent_to_transient", _forget)


def _before_flush(session: Session, context: UOWTransaction) -> None:
    if not _logs:
        return
    sent: set[tuple[Any, ...]] = set()
    context.attributes[_PRE_SENT] = sent
    for change in _plan(session, forget=False):
        if change.ready():
            _send(change, "pre", session)
            sent.add(change.key)


def _after_flush(session: Session, context: UOWTransaction) -> None:
    # History is still there (it is reset before after_flush_postexec); primary keys of the
    # new objects are not registered yet, so the signals wait for the next hook.
    if _logs:
        context.attributes[_PLAN] = _plan(session, forget=True)


def _after_flush_postexec(session: Session, context: UOWTransaction) -> None:
    plan: list[_Change] | None = context.attributes.pop(_PLAN, None)
    if not plan:
        return
    sent: set[tuple[Any, ...]] = context.attributes.get(_PRE_SENT, set())
    # Deferred pre_* first, so every pre_* of the flush still comes before every post_*.
    for change in plan:
        if change.key not in sent:
            _send(change, "pre", session)
    for change in plan:
        _send(change, "post", session)


def _after_soft_rollback(session: Session, previous_transaction: object) -> None:
    # A rollback expires the objects and their history: what was recorded is void. Objects
    # the rollback evicts from the session are handled by ``_forget``.
    if not _logs:
        return
    with _lock:
        for state in [s for s in _logs if s.session_id == session.hash_key]:
            del _logs[state]
        _shrink()


def _on_expire(state: InstanceState[Any], keys: Collection[str] | None) -> None:
    if not _logs or state not in _logs:
        return
    with _lock:
        tracks = _logs.get(state, {})
        for side in [side for side in tracks if keys is None or side.prop.key in keys]:
            del tracks[side]


def _forget(session: Session, instance: object) -> None:
    if _logs:
        with _lock:
            _logs.pop(sa_attributes.instance_state(instance), None)


Link = tuple[Any, ...]
Origin = tuple[int, InstanceState[Any], _Side]


def _shrink() -> None:
    """Start a new, small ``_logs`` once it is empty (call with ``_lock`` held).

    A dict keeps the table of its largest size: without this, one session that changed
    100,000 collections would leave megabytes behind for the life of the process.
    """
    global _logs
    if not _logs:
        _logs = weakref.WeakKeyDictionary()


def _plan(session: Session, *, forget: bool) -> list[_Change]:
    """Return the changes of the session's collections, in the order they were made."""
    deleted = {sa_attributes.instance_state(obj) for obj in session.deleted}
    with _lock:
        found: list[tuple[InstanceState[Any], dict[_Side, _Track]]] = []
        for obj in itertools.chain(session.new, session.dirty):
            state = sa_attributes.instance_state(obj)
            tracks = _logs.pop(state, None) if forget else _logs.get(state)
            if tracks:
                found.append((state, dict(tracks)))
        # Deleting an object deletes its links silently, as Django does.
        for state in deleted:
            if forget:
                _logs.pop(state, None)
        if forget:
            _shrink()
    if not found:
        return []
    # The last operation on a link decides which side it is reported from.
    origin: dict[Link, Origin] = {}
    for state, tracks in found:
        for side, track in tracks.items():
            for target, (seq, _) in list(track.last.items()):
                link = _link(side, state, target)
                if link not in origin or origin[link][0] < seq:
                    origin[link] = (seq, state, side)
    changes: list[_Change] = []
    before: set[Link] = set()
    after: dict[Link, bool] = {}
    for state, tracks in found:
        for track in tracks.values():
            changes.extend(_changes_of(state, track, origin, before, after))
    return _replayed(changes, before, after, origin)


def _replayed(
    changes: list[_Change], before: set[Link], after: dict[Link, bool], origin: dict[Link, Origin]
) -> list[_Change]:
    """Make ``changes``, applied in order to the links ``before``, give exactly ``after``.

    Changes computed per collection can be redundant or incomplete when both sides of the same
    links change around a clear() (a second clear() of links already cleared, a link put back
    after a clear()): receivers must never see a no-op nor miss a link that stays. Redundant
    targets are dropped; a link that ends up wrong gets its own change, at its last operation.
    """
    replayed, linked = _simulate(changes, before)
    fixes = []
    for link, present in after.items():
        if (link in linked) is not present and link in origin:
            seq, state, side = origin[link]
            target = link[2] if side.prop is side.forward else link[1]
            action = _ADD if present else _REMOVE
            fixes.append(_Change((seq, 1 if present else 0), state, side, action, [target]))
    if fixes:
        replayed, linked = _simulate(changes + fixes, before)
    merged: list[_Change] = []
    for change in replayed:
        same = merged and merged[-1].state is change.state and merged[-1].side is change.side
        if same and merged[-1].action == change.action:
            merged[-1].targets.extend(change.targets)
        else:
            merged.append(change)
    return merged


def _simulate(changes: list[_Change], before: set[Link]) -> tuple[list[_Change], set[Link]]:
    """Apply ``changes`` in order to ``before``; return those that changed something."""
    linked = set(before)
    kept = []
    for change in sorted(changes, key=lambda change: change.order):
        side, state = change.side, change.state
        if change.action == _CLEAR:
            end = 1 if side.prop is side.forward else 2
            gone = {link for link in linked if link[0] is side.forward and link[end] is state}
            if gone:
                linked -= gone
                kept.append(change)
            continue
        adding = change.action == _ADD
        targets = [t for t in change.targets if (_link(side, state, t) in linked) is not adding]
        links = {_link(side, state, target) for target in targets}
        if adding:
            linked |= links
        else:
            linked -= links
        if targets:
            kept.append(_Change(change.order, state, side, change.action, targets))
    return kept, linked


def _link(side: _Side, state: InstanceState[Any], target: InstanceState[Any]) -> Link:
    if side.prop is side.forward:
        return (side.forward, state, target)
    return (side.forward, target, state)


def _changes_of(
    state: InstanceState[Any],
    track: _Track,
    origin: dict[Link, Origin],
    before: set[Link],
    after: dict[Link, bool],
) -> list[_Change]:
    """Return the changes made from one collection; note its links before and after."""
    side = track.side
    history = state.get_history(side.prop.key, PASSIVE_NO_INITIALIZE)
    for obj in history.unchanged or ():
        link = _link(side, state, sa_attributes.instance_state(obj))
        before.add(link)
        after[link] = True
    for obj in history.deleted or ():
        link = _link(side, state, sa_attributes.instance_state(obj))
        before.add(link)
        after[link] = False
    for obj in history.added or ():
        after[_link(side, state, sa_attributes.instance_state(obj))] = True

    def mine(objects: Any) -> list[InstanceState[Any]]:
        result = []
        for obj in objects or ():
            target = sa_attributes.instance_state(obj)
            link = _link(side, state, target)
            found = origin.get(link)
            if found is None:
                # Changed while nobody listened: report it once, from the first side seen.
                found = origin[link] = (-1, state, side)
            if found[1] is state and found[2] is side:
                result.append(target)
        return result

    def made_at(targets: list[InstanceState[Any]]) -> int:
        # When the last of these changes was made: after any clear() it depends on.
        made = [track.last[t][0] for t in targets if t in track.last]
        return max(made, default=track.first)

    added, removed = mine(history.added), mine(history.deleted)
    changes = []
    linked = itertools.chain(history.deleted or (), history.unchanged or ())
    # A clear() is reported when it removed an object that was linked at the last flush.
    if track.first_clear is not None and any(
        sa_attributes.instance_state(obj) in track.cleared for obj in linked
    ):
        changes.append(_Change((track.first_clear, 0), state, side, _CLEAR, []))
        # Only what was removed before the clear() is not covered by it.
        first_clear = track.first_clear
        removed = [t for t in removed if track.last.get(t, (first_clear, False))[0] < first_clear]
    if removed:
        changes.append(_Change((made_at(removed), 0), state, side, _REMOVE, removed))
    if added:
        changes.append(_Change((made_at(added), 1), state, side, _ADD, added))
    return changes


def _send(change: _Change, phase: str, session: Session) -> None:
    side = change.side
    pk_set = None if change.action == _CLEAR else {_pk(target) for target in change.targets}
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
