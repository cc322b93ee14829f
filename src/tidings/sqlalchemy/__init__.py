"""Django's model signals, sent by SQLAlchemy 2.x models.

Call :func:`instrument` once with your declarative base (or registry, or ``SQLModel``); every
class mapped under it then sends ``pre_init``/``post_init``, ``pre_save``/``post_save``,
``pre_delete``/``post_delete``, ``m2m_changed``, ``class_prepared`` and the bulk-statement
signals of :mod:`tidings.models`, with Django's arguments, from sync ``Session`` and
``AsyncSession`` alike. See ``docs/sqlalchemy.md`` for the semantics and the differences from
Django.

:func:`on_commit` runs work after a Session's outermost transaction commits,
savepoint-correct, and so do receivers connected with ``delivery="on_commit"``; see
``docs/transactions.md``.

Requires SQLAlchemy: ``pip install "tidings[sqlalchemy]"``.
"""

from __future__ import annotations

try:
    import sqlalchemy  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'tidings.sqlalchemy needs SQLAlchemy 2: pip install "tidings[sqlalchemy]"'
    ) from exc

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from tidings._errors import FlushLoopError, InstrumentError, UpdateFieldsError
from tidings.sqlalchemy import _delivery, _events
from tidings.sqlalchemy._instrument import instrument
from tidings.sqlalchemy._lifecycle import DEFERRED, Deferred
from tidings.sqlalchemy._registry import AppLabelError, is_instrumented
from tidings.sqlalchemy._session import save
from tidings.sqlalchemy._session import update_fields_of as _update_fields_of
from tidings.sqlalchemy._transactions import (
    AmbiguousSessionError,
    current_session,
    in_transaction,
    on_commit,
)

if TYPE_CHECKING:  # the asyncio extension is needed only by those who use it
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "DEFERRED",
    "AmbiguousSessionError",
    "AppLabelError",
    "Deferred",
    "FlushLoopError",
    "InstrumentError",
    "UpdateFieldsError",
    "asave",
    "current_session",
    "in_transaction",
    "instrument",
    "is_instrumented",
    "on_commit",
    "save",
]

# Every Session's transactions are followed from the import on, so that on_commit() and
# delivery="on_commit" receivers work whether or not instrument() is called.
_events.install(_events.TRANSACTIONS)
_delivery.install()


async def asave(
    session: AsyncSession,
    instance: Any,
    *,
    update_fields: Iterable[str] | None = None,
    flush: bool = True,
) -> None:
    """The :func:`save` of an ``AsyncSession``: mark ``instance`` saved, then await the flush.

    Args:
        session: The ``AsyncSession``.
        instance: A new or persistent instance of an instrumented class.
        update_fields: As for :func:`save`.
        flush: As for :func:`save`.

    Raises:
        UpdateFieldsError: As for :func:`save`.
    """
    fields = _update_fields_of(update_fields)
    if fields is not None and not fields:
        return  # as save(): no signal, no SQL
    save(session.sync_session, instance, update_fields=fields, flush=False)
    if flush:
        await session.flush()
