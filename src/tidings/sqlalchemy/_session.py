"""Save and delete signals around a Session flush, and the explicit :func:`save` helper.

One flush of a Session (sync, or the sync session inside an ``AsyncSession``) goes:

``before_flush``
    ``pre_save`` for each new object (``created=True``) in the order it was added, then for
    each persistent object with a real column or many-to-one change, or explicitly saved with
    :func:`save`; then ``pre_delete`` for every deleted object (:mod:`._delete` order). Receivers
    may change the objects and the session here: what they add, change or delete is signalled
    in further rounds and written by this same flush.
``after_flush``
    the ``changes`` of each update are read again (history is still there), so ``post_save``
    reports what was written, including changes made by ``pre_save`` receivers.
``after_flush_postexec``
    ``post_save`` for each saved object, then ``post_delete`` (:mod:`._delete` order). Receivers
    may use the session; if they leave it with pending changes (the ``Profile`` created in a
    ``post_save`` receiver of ``User``), the Session is flushed again at once, inside the same
    ``flush()``/``commit()`` call, as Django's receivers write immediately.

Everything runs inside the flush's transaction: a receiver's exception propagates out of
``flush()``/``commit()`` and SQLAlchemy rolls the flush back.

Objects of classes not instrumented are ignored. When no receiver is connected to any of the
four signals and nothing was saved explicitly, each hook returns after one cheap check.

Other parts of the integration (many-to-many) plug in with :func:`add_flush_hook`; the Session
events are listened to by :mod:`tidings.sqlalchemy._events`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import Any, Literal

from sqlalchemy import inspect
from sqlalchemy.orm import Mapper, Session, object_mapper
from sqlalchemy.orm.attributes import flag_dirty, instance_state
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.orm.unitofwork import UOWTransaction

from tidings._errors import AsyncReceiversInEventLoopError, FlushLoopError, UpdateFieldsError
from tidings.models import post_delete, post_save, pre_delete, pre_save
from tidings.sqlalchemy import _delete, _withheld
from tidings.sqlalchemy._compat import (
    flush_again,
    is_clean,
    is_flushing,
    is_orphan,
    orphaned_outside_of_session,
)
from tidings.sqlalchemy._fields import (
    changes_of,
    expunged_by_flush,
    field_keys,
    fields_modified,
    removed_children,
)
from tidings.sqlalchemy._registry import is_instrumented
from tidings.sqlalchemy._send import resend, send

__all__ = [
    "FlushHook",
    "add_flush_hook",
    "after_flush",
    "after_flush_postexec",
    "before_flush",
    "save",
    "update_fields_of",
    "using_for",
]

FlushHook = Callable[[Session, UOWTransaction], None]
Stage = Literal["before_flush", "after_flush", "after_flush_postexec"]

_STATE_KEY = "tidings.sqlalchemy"
_SAVES_KEY = "tidings.sqlalchemy.saves"
_DEPTH_KEY = "tidings.sqlalchemy.depth"
_USING_OPTION = "tidings_using"
_MAX_ROUNDS = 100

_hooks: dict[str, list[FlushHook]] = {
    "before_flush": [],
    "after_flush": [],
    "after_flush_postexec": [],
}


def add_flush_hook(stage: Stage, hook: FlushHook) -> None:
    """Call ``hook(session, flush_context)`` at ``stage`` of every flush.

    Hooks run after this module's own work at that stage: ``before_flush`` after the
    ``pre_save``/``pre_delete`` rounds, ``after_flush`` once the rows are written (history still
    present), ``after_flush_postexec`` after ``post_save``/``post_delete`` and before the
    re-flush of what receivers left pending. Use :func:`tidings.sqlalchemy._send.send` to send
    from a hook. Adding the same hook twice adds it once.

    Args:
        stage: The SessionEvents event name.
        hook: The callable.
    """
    hooks = _hooks[stage]
    if hook not in hooks:
        hooks.append(hook)


class _Save:
    __slots__ = ("changes", "created", "instance", "sender", "update_fields", "using")

    # Positional: built once per saved row, where keyword passing costs measurably more.
    def __init__(
        self, instance: Any, created: bool, update_fields: frozenset[str] | None, using: str
    ) -> None:
        self.instance = instance
        self.sender: type = type(instance)
        self.created = created
        self.update_fields = update_fields
        self.using = using
        self.changes: dict[str, tuple[Any, Any]] = {}


class _FlushState:
    __slots__ = ("partial", "post_deletes", "saves", "seen", "using")

    def __init__(self) -> None:
        self.seen: set[InstanceState[Any]] = set()
        self.saves: list[_Save] = []
        self.post_deletes: list[tuple[_delete.Entry, str]] = []
        self.using: dict[Mapper[Any], str] = {}
        # Objects saved with update_fields: the changes to other fields are withheld.
        self.partial: list[tuple[InstanceState[Any], frozenset[str]]] = []


def _listening() -> bool:
    # has_connections(), not ``receivers``: that property copies the connections under the lock.
    return (
        pre_save.has_connections()
        or post_save.has_connections()
        or pre_delete.has_connections()
        or post_delete.has_connections()
    )


def using_for(session: Session, mapper: Mapper[Any]) -> str:
    """Return the ``using`` value for ``mapper``'s objects in ``session``.

    It is the ``tidings_using`` execution option of the engine or connection the session
    binds the mapper to, and ``"default"`` when that option is not set.
    """
    bind = session.get_bind(mapper=mapper)
    value = bind.get_execution_options().get(_USING_OPTION, "default")
    return str(value)


def before_flush(session: Session, flush_context: UOWTransaction, _instances: object) -> None:
    """Session ``before_flush``: the ``pre_save``/``pre_delete`` rounds, then the hooks."""
    explicit: dict[InstanceState[Any], frozenset[str] | None] = session.info.pop(_SAVES_KEY, {})
    if explicit or _listening():
        flush = _FlushState()
        flush_context.attributes[_STATE_KEY] = flush
        for _ in range(_MAX_ROUNDS):
            # Receivers of the previous round may have called save() for other objects.
            explicit.update(session.info.pop(_SAVES_KEY, {}))
            saves = _new_saves(session, flush, explicit)
            deletes = _new_deletes(session, flush)
            if not saves and not deletes:
                break
            if not _send_pre(session, flush, saves, deletes):
                break  # no receiver ran, so nothing changed the session since this scan
        else:
            raise FlushLoopError(
                f"pre_save/pre_delete receivers kept changing the session for {_MAX_ROUNDS} "
                "rounds of one flush; is a receiver saving the object it receives?"
            )
        # After the receivers: what they change in fields not listed is withheld too.
        hidden = [(state, _withheld.hide(state, fields)) for state, fields in flush.partial]
        try:
            for hook in _hooks["before_flush"]:
                hook(session, flush_context)
        except BaseException:
            # The flush never starts, so neither do its saves: nothing stays withheld.
            for state, keys in hidden:
                _withheld.show(state, keys)
            raise
    else:
        for hook in _hooks["before_flush"]:
            hook(session, flush_context)


def _new_saves(
    session: Session,
    flush: _FlushState,
    explicit: dict[InstanceState[Any], frozenset[str] | None],
) -> list[_Save]:
    found: list[_Save] = []
    seen = flush.seen
    # What each class's objects get, asked once per class, not per object: no receiver runs
    # while the session is scanned, so the answers cannot change meanwhile.
    classes: dict[type, _ClassPlan] = {}
    for obj in session.new:
        plan = classes.get(type(obj))
        if plan is None:
            plan = classes[type(obj)] = _class_plan(session, flush, obj)
        if plan is _IGNORED:
            continue
        state = instance_state(obj)
        if state in seen:
            continue
        # The flag first: it is almost always False, and this runs for every pending object.
        if orphaned_outside_of_session(state) and expunged_by_flush(state):
            continue  # removed from its parent before ever being flushed: the flush expunges it
        seen.add(state)
        if type(plan) is str:  # a save receiver matches (the using, else _UNHEARD)
            found.append(_Save(obj, True, None, plan))
    for obj in session.dirty:
        plan = classes.get(type(obj))
        if plan is None:
            plan = classes[type(obj)] = _class_plan(session, flush, obj)
        if plan is _IGNORED:
            continue
        state = instance_state(obj)
        if state in seen:
            continue
        if state.has_identity and is_orphan(state):
            continue  # the flush deletes it: _new_deletes signals it
        _withheld.settle(state)
        if state in explicit:
            fields = explicit[state]
            # What an earlier save(update_fields=...) withheld, this save writes if it covers it.
            _withheld.show(state, fields)
            if fields is not None:
                flush.partial.append((state, fields))
        elif fields_modified(state):
            fields = None
        else:
            continue  # unchanged, or only other rows change: Django would not save it
        seen.add(state)
        if type(plan) is str:  # a save receiver matches (the using, else _UNHEARD)
            found.append(_Save(obj, False, fields, plan))
    return found


class _Unsaved(enum.Enum):
    IGNORED = enum.auto()  # not an instrumented class: the hooks leave its objects alone
    UNHEARD = enum.auto()  # instrumented, but no save receiver matches it


_IGNORED = _Unsaved.IGNORED
_UNHEARD = _Unsaved.UNHEARD
# What the saves of a class's objects need: their ``using`` when a save receiver matches.
_ClassPlan = str | _Unsaved


def _class_plan(session: Session, flush: _FlushState, obj: Any) -> _ClassPlan:
    cls = type(obj)
    if not is_instrumented(cls):
        return _IGNORED
    if not (pre_save.has_listeners(cls) or post_save.has_listeners(cls)):
        return _UNHEARD
    return _using(session, flush, instance_state(obj).mapper)


def _new_deletes(session: Session, flush: _FlushState) -> list[Any]:
    if not (pre_delete.has_connections() or post_delete.has_connections()):
        return []
    found = []
    for obj in session.deleted:
        state = instance_state(obj)
        if state in flush.seen or not is_instrumented(type(obj)):
            continue
        flush.seen.add(state)
        found.append(obj)
    orphans: list[Any] = []
    for obj in session.dirty:
        state = instance_state(obj)
        # A persistent object removed from a delete-orphan collection: the flush will delete
        # it (the same test SQLAlchemy's flush applies), so it is signalled as a deletion.
        if state not in flush.seen and state.has_identity and is_orphan(state):
            orphans.append(obj)
    orphans.extend(removed_children(session))
    for orphan in orphans:
        # The flush deletes what the orphan's own delete cascade reaches, too.
        mapper = object_mapper(orphan)
        reached = [child for child, *_ in mapper.cascade_iterator("delete", instance_state(orphan))]
        for obj in (orphan, *reached):
            state = instance_state(obj)
            if state in flush.seen or not state.has_identity or not is_instrumented(type(obj)):
                continue
            flush.seen.add(state)
            found.append(obj)
    return found


def _using(session: Session, flush: _FlushState, mapper: Mapper[Any]) -> str:
    using = flush.using.get(mapper)
    if using is None:
        using = flush.using[mapper] = using_for(session, mapper)
    return using


def _send_pre(session: Session, flush: _FlushState, saves: list[_Save], deletes: list[Any]) -> bool:
    """Send ``pre_save`` and ``pre_delete`` for one round; return whether anything was sent."""
    flush.saves.extend(saves)
    sent = False
    # Only pre_save receivers run in this loop: with none connected, none gets connected.
    for record in saves if pre_save.has_connections() else ():
        if pre_save.has_listeners(record.sender):
            sent = True
            changes = {} if record.created else changes_of(record.instance, load=True)
            if record.update_fields is not None:
                changes = {k: v for k, v in changes.items() if k in record.update_fields}
            send(
                pre_save,
                record.sender,
                instance=record.instance,
                raw=False,
                using=record.using,
                update_fields=record.update_fields,
                changes=changes,
            )
    if not deletes:
        return sent
    pre, post = _delete.plan(deletes)
    for sender, obj, origin in pre:
        using = _using(session, flush, object_mapper(obj))
        if pre_delete.has_listeners(sender):
            send(pre_delete, sender, instance=obj, using=using, origin=origin)
            sent = True
    flush.post_deletes.extend(
        ((sender, obj, origin), _using(session, flush, object_mapper(obj)))
        for sender, obj, origin in post
    )
    return sent


def after_flush(session: Session, flush_context: UOWTransaction) -> None:
    """Session ``after_flush``: read what each update wrote, then the hooks."""
    flush: _FlushState | None = flush_context.attributes.get(_STATE_KEY)
    if flush is not None:
        for record in flush.saves:
            if not record.created and post_save.has_listeners(record.sender):
                record.changes = changes_of(record.instance)
    for hook in _hooks["after_flush"]:
        hook(session, flush_context)


def after_flush_postexec(session: Session, flush_context: UOWTransaction) -> None:
    """Session ``after_flush_postexec``: ``post_save``/``post_delete``, the hooks, re-flush."""
    flush: _FlushState | None = flush_context.attributes.pop(_STATE_KEY, None)
    if flush is not None:
        _send_post(flush)
    for hook in _hooks["after_flush_postexec"]:
        hook(session, flush_context)
    if flush is not None or any(_hooks.values()):
        _flush_again(session)


def _send_post(flush: _FlushState) -> None:
    # No has_listeners() first: a send that matches nobody costs less than asking. And
    # signal.send() itself, not _send.send(): one call and one dict less per row.
    for record in flush.saves:
        try:
            post_save.send(
                record.sender,
                instance=record.instance,
                created=record.created,
                raw=False,
                using=record.using,
                update_fields=record.update_fields,
                changes=record.changes,
            )
        except AsyncReceiversInEventLoopError as error:
            _resend_post_save(record, error)
    for (sender, obj, origin), using in flush.post_deletes:
        if post_delete.has_listeners(sender):
            send(post_delete, sender, instance=obj, using=using, origin=origin)


def _resend_post_save(record: _Save, error: AsyncReceiversInEventLoopError) -> None:
    # The arguments of _send_post's send, in its order (raw is always False there).
    named = {name: name != "raw" and getattr(record, name) for name in _POST_SAVE_ARGUMENTS}
    resend(post_save, record.sender, error, **named)


_POST_SAVE_ARGUMENTS = ("instance", "created", "raw", "using", "update_fields", "changes")


def _flush_again(session: Session) -> None:
    """Flush what receivers left pending, from inside the current flush.

    ``Session.flush()`` refuses to run while a flush is in progress, and the outer flush has
    no later hook, so this calls the flush body directly: each extra
    flush runs in a subtransaction of the outer one, like every flush does (see
    :func:`tidings.sqlalchemy._compat.flush_again`). Only the
    outermost flush loops; the extra flushes' own hooks leave the work to it, which keeps the
    stack flat however long receivers keep saving.
    """
    if session.info.get(_DEPTH_KEY) or is_clean(session):
        return
    session.info[_DEPTH_KEY] = True
    try:
        for _ in range(_MAX_ROUNDS):
            flush_again(session)
            if is_clean(session):
                return
        raise FlushLoopError(
            f"post_save/post_delete receivers kept changing the session for {_MAX_ROUNDS} "
            "flushes in a row; is a receiver saving the object it receives?"
        )
    finally:
        del session.info[_DEPTH_KEY]


def save(
    session: Session,
    instance: Any,
    *,
    update_fields: Iterable[str] | None = None,
    flush: bool = True,
) -> None:
    """Save ``instance`` like Django's ``Model.save()``: signals even when nothing changed.

    The instance is added to ``session`` and marked as saved, so that the next flush sends
    ``pre_save``/``post_save`` for it even if no attribute changed (a plain flush skips
    unchanged objects, as SQLAlchemy writes nothing for them).

    Args:
        session: A sync ``Session`` (for an ``AsyncSession`` use :func:`asave`).
        instance: A new or persistent instance of an instrumented class.
        update_fields: Attribute names, as in Django: they reach the receivers as a
            ``frozenset``, and changes to other attributes are left unwritten (they stay in
            memory). An empty iterable returns at once: no signal, no SQL.
        flush: Flush the session now (the whole session: SQLAlchemy's unit of work writes
            every pending change). With ``False`` the next flush saves it. Called from a
            receiver during a flush, it never flushes: the object is written right after the
            receivers, by the same ``flush()`` call.

    Raises:
        UpdateFieldsError: (a ``ValueError``) ``update_fields`` is a string rather than a
            collection of names, names an attribute that is not a column or many-to-one
            attribute, names a primary-key column, or is given for an object not yet in the
            database.
    """
    state: InstanceState[Any] = inspect(instance)
    fields = update_fields_of(update_fields)
    if fields is not None:
        if not fields:
            return
        _check_update_fields(state, fields)
    session.add(instance)
    if state.persistent:
        flag_dirty(instance)
    session.info.setdefault(_SAVES_KEY, {})[state] = fields
    # Inside a receiver the session is flushing and cannot flush again; the object is
    # written by the flush that follows the receivers, within the same flush() call.
    if flush and not is_flushing(session):
        session.flush()


def update_fields_of(update_fields: Iterable[str] | None) -> frozenset[str] | None:
    """Return ``update_fields`` as the frozenset receivers get (None stays None).

    Raises:
        UpdateFieldsError: ``update_fields`` is a string, which would be read as its letters.
    """
    if update_fields is None:
        return None
    if isinstance(update_fields, (str, bytes)):
        raise UpdateFieldsError(
            f"update_fields must be a collection of field names, not the string "
            f"{update_fields!r} (read as the names of its letters); pass "
            f"update_fields=[{update_fields!r}]"
        )
    return frozenset(update_fields)


def _check_update_fields(state: InstanceState[Any], fields: frozenset[str]) -> None:
    mapper = state.mapper
    cls = mapper.class_.__name__
    if state.key is None:
        raise UpdateFieldsError(
            f"Cannot save a new {cls} with update_fields={sorted(fields)}: it is not in the "
            "database yet; save it without update_fields."
        )
    primary = {mapper.get_property_by_column(column).key for column in mapper.primary_key}
    allowed = set(field_keys(mapper))
    wrong = sorted(name for name in fields if name not in allowed or name in primary)
    if wrong:
        raise UpdateFieldsError(
            f"The following fields do not exist in model {cls}, or are m2m fields or primary "
            f"keys: {', '.join(wrong)} (update_fields of tidings.sqlalchemy.save())"
        )
