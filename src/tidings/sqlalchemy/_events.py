"""Every Session-level event ``tidings.sqlalchemy`` listens to, and which module handles it.

The events are listened to on the ``Session`` class (so every Session, and the sync Session
inside every ``AsyncSession``), in groups installed once each, at the moment the group is
first needed:

* :data:`TRANSACTIONS`, when ``tidings.sqlalchemy`` is imported: the on-commit machinery
  (:mod:`tidings.sqlalchemy._transactions`) tracks the transactions open in each context and
  runs, hands over or drops their work when they end.
* :data:`FLUSH`, at the first ``instrument()``: the save and delete signals around each flush
  (:mod:`tidings.sqlalchemy._session`) and the bulk signals around ORM-enabled statements
  (:mod:`tidings.sqlalchemy._bulk`).
* :data:`MANY_TO_MANY`, when the first class is instrumented: ``m2m_changed``
  (:mod:`tidings.sqlalchemy._m2m`) runs inside the flush events of :data:`FLUSH`, after their
  own work at each stage (:func:`tidings.sqlalchemy._session.add_flush_hook`), and forgets
  what it recorded when a rollback or an object leaving its session voids it.

Within a group, listeners are added in the order listed. Per-Session listeners that come and
go (``loaded_as_persistent``, while ``post_init`` or ``pre_init`` has receivers) stay with
:mod:`tidings.sqlalchemy._lifecycle`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from tidings.sqlalchemy import _bulk, _m2m, _m2m_record, _session, _transactions

__all__ = ["FLUSH", "MANY_TO_MANY", "TRANSACTIONS", "Group", "install"]


@dataclass(frozen=True, eq=False)
class Group:
    """Session events installed together.

    Attributes:
        name: What the group is for (in ``repr()`` only).
        flush_hooks: ``(stage, hook)`` pairs run inside :mod:`tidings.sqlalchemy._session`'s
            own flush listeners, after its work at that stage.
        listeners: ``(event name, listener)`` pairs listened to on ``Session``.
    """

    name: str
    flush_hooks: tuple[tuple[_session.Stage, _session.FlushHook], ...]
    listeners: tuple[tuple[str, Callable[..., Any]], ...]


TRANSACTIONS = Group(
    "on-commit work",
    flush_hooks=(),
    listeners=(
        ("after_transaction_create", _transactions.after_transaction_create),
        ("after_commit", _transactions.after_commit),
        ("after_transaction_end", _transactions.after_transaction_end),
    ),
)

FLUSH = Group(
    "save, delete and bulk signals",
    flush_hooks=(),
    listeners=(
        ("before_flush", _session.before_flush),
        ("after_flush", _session.after_flush),
        ("after_flush_postexec", _session.after_flush_postexec),
        ("do_orm_execute", _bulk.on_execute),
    ),
)

MANY_TO_MANY = Group(
    "m2m_changed",
    flush_hooks=(
        ("before_flush", _m2m.before_flush),
        ("after_flush", _m2m.after_flush),
        ("after_flush_postexec", _m2m.after_flush_postexec),
    ),
    listeners=(
        ("after_soft_rollback", _m2m_record.after_soft_rollback),
        ("pending_to_transient", _m2m_record.forget_object),
        ("persistent_to_transient", _m2m_record.forget_object),
    ),
)

_lock = threading.Lock()
_installed: set[str] = set()


def install(group: Group) -> None:
    """Install ``group``'s hooks and listeners, once (later calls do nothing)."""
    with _lock:
        if group.name in _installed:
            return
        _installed.add(group.name)
    for stage, hook in group.flush_hooks:
        _session.add_flush_hook(stage, hook)
    for name, listener in group.listeners:
        event.listen(Session, name, listener)
