"""Every private SQLAlchemy name ``tidings.sqlalchemy`` relies on, in one place.

SQLAlchemy has no public API for these needs; each function below says why it is needed. They
were verified on SQLAlchemy 2.0.24 (the oldest release the ``sqlalchemy`` extra allows) and
2.1.9; CI runs the integration's tests on 2.0.24 and on the newest 2.1 release, so a release
that moves one of them breaks those tests, not users silently. The floor was 2.0.2 before it
was tested: 2.0.19 added ``PassiveFlag.INCLUDE_PENDING_MUTATIONS``, which the flush hooks read
history with, and before 2.0.24 the ``on_commit`` work of an ``AsyncSession`` cannot be
awaited after the commit (its tests fail on 2.0.23).

Public API is used wherever it exists: ``RelationshipProperty.cascade``, statements'
``exported_columns`` (RETURNING), ``FromClause.is_derived_from``, ``attributes.flag_modified``,
``Session.get_transaction()`` (which transaction is open).
One more dependency on SQLAlchemy's internals lives in ``_m2m_record._inside_clear``: it finds
a collection's own ``clear`` on the call stack (SQLAlchemy reports ``clear()`` as one remove
event per member, like single removals). ``tests/integrations/sqlalchemy/test_m2m_clear.py``
fails loudly for every kind of collection if that stops working.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import util as sa_util
from sqlalchemy.orm import RelationshipProperty, Session, SessionTransaction, mapperlib, registry
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.util import concurrency as sa_concurrency

__all__ = [
    "STATE_ATTR",
    "await_",
    "committed_state",
    "flush_again",
    "has_parent",
    "has_return_defaults",
    "in_greenlet",
    "is_clean",
    "is_flushing",
    "is_orphan",
    "mapped_registries",
    "orphaned_outside_of_session",
    "outside_begin_block",
    "reverse_properties",
    "sqlmodel_registry",
]

#: The attribute SQLAlchemy stores an instance's state under (``instance.__dict__``): present
#: once a constructor started, which tells a subclass's ``super().__init__()`` call apart.
STATE_ATTR = "_sa_instance_state"

#: SQLAlchemy's greenlet bridge (public): 2.1 renamed ``await_only`` to ``await_``.
await_: Any = getattr(sa_util, "await_", None) or sa_util.await_only


def is_flushing(session: Session) -> bool:
    """``Session._flushing``: ``save()`` called by a receiver must not flush re-entrantly."""
    return bool(session._flushing)


def is_clean(session: Session) -> bool:
    """``Session._is_clean()``: whether anything is pending, without ``session.dirty``'s cost.

    ``session.dirty`` runs ``is_modified()`` on every object; this reads the identity map's
    modified flags, as ``Session.flush()`` does before flushing.
    """
    return bool(session._is_clean())


def flush_again(session: Session) -> None:
    """``Session._flush()``: flush what receivers left pending, from inside a flush.

    ``Session.flush()`` refuses to run while a flush is in progress, and the outer flush has
    no later hook; its body runs the extra flush in a subtransaction of the outer one.
    """
    session._flush()


@contextlib.contextmanager
def outside_begin_block(session: Session, transaction: SessionTransaction) -> Iterator[None]:
    """``Session._trans_context_manager``: let work run after ``transaction`` ended, in its block.

    Inside ``with session.begin():`` the block's ``__exit__`` commits, and SQLAlchemy keeps the
    ended transaction as the Session's context manager until the commit returns; meanwhile it
    refuses to begin anything. The on-commit work runs from ``after_transaction_end``, once the
    transaction is over: with that context manager cleared, and put back afterwards.
    """
    context = session._trans_context_manager
    if context is transaction:
        session._trans_context_manager = None
    try:
        yield
    finally:
        if context is transaction:
            session._trans_context_manager = context


def in_greenlet() -> bool:
    """``sqlalchemy.util.concurrency.in_greenlet()``: whether :data:`await_` can await here.

    True in the greenlet bridge (the sync code an ``AsyncSession`` runs). False if a release
    drops it, which only makes async on-commit work refused more often.
    """
    check = getattr(sa_concurrency, "in_greenlet", None)
    return bool(check()) if check is not None else False


def is_orphan(state: InstanceState[Any]) -> bool:
    """``Mapper._is_orphan(state)``: the test the flush applies to delete-orphan children."""
    return bool(state.mapper._is_orphan(state))


def orphaned_outside_of_session(state: InstanceState[Any]) -> bool:
    """``InstanceState._orphaned_outside_of_session``: half of the flush's "expunge" test.

    The flush expunges a pending orphan instead of inserting it only when this is set.
    """
    return bool(state._orphaned_outside_of_session)


def has_parent(state: InstanceState[Any], key: str, child: InstanceState[Any]) -> bool | None:
    """The attribute implementation's ``hasparent()``: the delete-orphan test of a child.

    For a child removed from ``state``'s relationship ``key``; None when unknown.
    """
    result: bool | None = state.manager[key].impl.hasparent(child)
    return result


def committed_state(state: InstanceState[Any]) -> dict[str, Any]:
    """``InstanceState.committed_state``: the old values history compares against.

    Read to tell an unloaded old value apart, written to put an old value back after
    ``flag_modified`` (which records "unknown").
    """
    result: dict[str, Any] = state.committed_state
    return result


def reverse_properties(prop: RelationshipProperty[Any]) -> set[RelationshipProperty[Any]]:
    """``RelationshipProperty._reverse_property``: the other side of a relationship pair.

    The partner of a backref or ``back_populates`` pair, resolved at mapper configuration.
    """
    result: set[RelationshipProperty[Any]] = prop._reverse_property
    return result


def has_return_defaults(statement: Any) -> bool:
    """``UpdateBase._return_defaults``: whether the caller asked for ``return_defaults()``.

    ``exported_columns`` tells only ``returning()`` apart.
    """
    return bool(getattr(statement, "_return_defaults", False))


def mapped_registries() -> list[registry]:
    """``mapperlib._all_registries()``: every registry of the process (for ``apps.check()``).

    An empty list if a release drops it, which only narrows what the checks can see.
    """
    found = getattr(mapperlib, "_all_registries", None)
    return [] if found is None else list(found())


def sqlmodel_registry(base: type) -> Any:
    """``SQLModel._sa_registry``: where SQLModel keeps the registry of its table models."""
    return getattr(base, "_sa_registry", None)
