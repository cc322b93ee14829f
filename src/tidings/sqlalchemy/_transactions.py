"""Work that runs after a Session's outermost transaction commits (``on_commit``).

Rules (Django's ``transaction.on_commit``, applied to SQLAlchemy's Session):

* Work registered while a Session has a transaction open (``session.in_transaction()``,
  autobegun or explicit) belongs to the innermost open savepoint, or to the outermost
  transaction when no savepoint is open. A savepoint that is released hands its work to the
  enclosing transaction; one that is rolled back drops its own work only, never the
  enclosing transaction's (SQLAlchemy fires ``after_rollback`` on ``ROLLBACK TO SAVEPOINT``
  too, so a plain "clear on rollback" would lose the outer work).
* The work of the outermost transaction runs once its COMMIT succeeded, in registration
  order, from the ``after_transaction_end`` event of that transaction: SQLAlchemy has closed
  it, so the Session is usable again (expired attributes reload, new work autobegins a new
  transaction), also inside ``with session.begin():``, whose block still holds the ended
  transaction at that point. ``after_commit`` would be too early: it forbids SQL. A commit
  that fails, a rollback, and ``Session.close()`` without a commit run nothing.
* Robust: an exception (``Exception``) of one callable is logged to the
  ``tidings.sqlalchemy`` logger (a child of ``tidings``) with the callable and the
  traceback; the later ones still run and the commit stays done.
* Async callables: awaited one at a time in that order. Under ``AsyncSession`` the commit runs
  inside SQLAlchemy's greenlet, and they are awaited through it before ``await
  session.commit()`` returns; a sync Session with no running event loop in its thread runs
  each in a fresh event loop of its own.
* Work registered while the commit's work runs follows the same rules: with no transaction
  open it runs at once (inside the same commit phase); if the callable opened a transaction on
  the Session (reading an expired attribute autobegins one), it waits for that transaction.
* No transaction open: the work is called at once (Django's behaviour outside ``atomic``),
  and its exception propagates to the caller.

Which Session: the one given (``session=``); else, among the Sessions whose outermost
transaction was begun in the calling context (thread or asyncio task; a context copied after
it began sees them too) and is still open, the one that is flushing (model signals are sent
from inside the flush); else the one bound by :func:`in_transaction`; else the only open one.
Two open Sessions and nothing to choose by: :class:`AmbiguousSessionError` naming both.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, SessionTransaction

from tidings import AsyncReceiversInEventLoopError, InvalidReceiverError
from tidings._async import in_running_loop, run_concurrently
from tidings._errors import AmbiguousSessionError, TidingsTypeError
from tidings._refs import describe, is_async_callable
from tidings.sqlalchemy._compat import await_, in_greenlet, is_flushing, outside_begin_block

__all__ = [
    "AmbiguousSessionError",
    "Capturing",
    "Work",
    "after_commit",
    "after_transaction_create",
    "after_transaction_end",
    "current_session",
    "defer",
    "in_transaction",
    "on_commit",
]

logger = logging.getLogger("tidings.sqlalchemy")

_QUEUES_KEY = "tidings.sqlalchemy.on_commit"  # Session.info: {SessionTransaction: _Queue}

_Entry = tuple["weakref.ref[Session]", "weakref.ref[SessionTransaction]"]
_open: contextvars.ContextVar[tuple[_Entry, ...]] = contextvars.ContextVar(
    "tidings_sqlalchemy_open", default=()
)
_bound: contextvars.ContextVar[Session | None] = contextvars.ContextVar(
    "tidings_sqlalchemy_bound", default=None
)


class Work:
    """One callable waiting for a commit.

    Attributes:
        func: The callable, called with no arguments.
        name: How logs and errors name it.
        is_async: Whether calling it returns an awaitable.
        dropped: True once its transaction (or savepoint) was rolled back.
    """

    __slots__ = ("capture", "dropped", "func", "is_async", "name")

    def __init__(self, func: Callable[[], Any], *, name: str, is_async: bool) -> None:
        self.func = func
        self.name = name
        self.is_async = is_async
        self.dropped = False
        self.capture: Capturing | None = None

    def __repr__(self) -> str:
        return f"<on_commit work {self.name}>"


class _Queue:
    __slots__ = ("committed", "work")

    def __init__(self) -> None:
        self.work: list[Work] = []
        self.committed = False


class Capturing:
    """Takes the work deferred to a Session's commit while active (``capture_on_commit``).

    Attributes:
        session: Only work for this Session is taken; ``None`` for every Session.
        work: The work taken, in registration order.
    """

    def __init__(self, session: Session | None) -> None:
        self.session = session
        self.work: list[Work] = []

    def __enter__(self) -> Capturing:
        with _captures_lock:
            _captures.append(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        with _captures_lock:
            _captures.remove(self)

    def pending(self) -> list[Work]:
        """The work taken and not dropped by a rollback, in registration order."""
        return [work for work in self.work if not work.dropped]


_captures: list[Capturing] = []
_captures_lock = threading.Lock()


# -- which Session ------------------------------------------------------------------------------


def sync_session(session: Any) -> Session:
    sync = getattr(session, "sync_session", session)  # an AsyncSession wraps a sync Session
    if not isinstance(sync, Session):
        raise TidingsTypeError(f"Expected a sqlalchemy Session or AsyncSession, not {session!r}")
    return sync


@contextlib.contextmanager
def in_transaction(session: Any) -> Iterator[Any]:
    """Bind the on-commit work deferred in the ``with`` block to ``session``'s transaction.

    For sends whose Session implicit detection cannot see (it was begun in another thread or
    task) or cannot choose (two Sessions are open). Work deferred while ``session`` has no
    transaction open is called at once, as without the binding. Blocks nest: the innermost
    binding wins.

    Args:
        session: A ``Session`` or an ``AsyncSession``.

    Yields:
        ``session``.

    Raises:
        TypeError: ``session`` is neither.
    """
    token = _bound.set(sync_session(session))
    try:
        yield session
    finally:
        _bound.reset(token)


def _describe_session(session: Session) -> str:
    bind = session.bind
    where = ""
    if isinstance(bind, Engine):
        where = f" bound to {bind.url.render_as_string(hide_password=True)}"
    elif isinstance(bind, Connection):
        where = f" bound to {bind.engine.url.render_as_string(hide_password=True)}"
    return f"<{type(session).__name__} at {id(session):#x}{where}>"


def _open_here() -> list[Session]:
    found: list[Session] = []
    for session_ref, transaction_ref in _open.get():
        session = session_ref()
        transaction = transaction_ref()
        if session is None or transaction is None:
            continue
        if session.get_transaction() is transaction:
            found.append(session)
    return found


def current_session(session: Any = None) -> Session | None:
    """Return the Session whose transaction deferred work would join, or None if none is open.

    Args:
        session: A ``Session`` or ``AsyncSession`` to use instead of the others.

    Raises:
        AmbiguousSessionError: no ``session`` given, no Session of the calling context is
            flushing, none is bound, and two or more have a transaction open there.
        TypeError: ``session`` is neither a ``Session`` nor an ``AsyncSession``.
    """
    if session is not None:
        chosen: Session | None = sync_session(session)
    else:
        candidates = _open_here()
        # Model signals are sent from inside a flush: their work joins the flushing Session.
        flushing = [candidate for candidate in candidates if is_flushing(candidate)]
        if len(flushing) == 1:
            chosen = flushing[0]
        else:
            chosen = _bound.get()
            if chosen is None:
                if len(flushing) > 1:
                    candidates = flushing
                if len(candidates) > 1:
                    _ambiguous(candidates)
                chosen = candidates[0] if candidates else None
    if chosen is None or not chosen.in_transaction():
        return None
    return chosen


def _ambiguous(candidates: list[Session]) -> None:
    names = " and ".join(_describe_session(s) for s in candidates)
    raise AmbiguousSessionError(
        f"Cannot tell which transaction to defer to: {names} both have a transaction open in "
        "this thread or task. Bind one with tidings.sqlalchemy.in_transaction(session), or "
        "pass session=."
    )


# -- deferring ----------------------------------------------------------------------------------


def _owner(session: Session) -> SessionTransaction:
    # A flush runs in a subtransaction; work belongs to the savepoint or root around it.
    owner = session.get_nested_transaction() or session.get_transaction()
    assert owner is not None
    return owner


def defer(work: Work, session: Session | None) -> bool:
    """Queue ``work`` for the commit of ``session``'s transaction.

    Args:
        work: The work.
        session: The Session from :func:`current_session`, or None.

    Returns:
        False when ``session`` is None or has no transaction open: the caller runs the work
        now.
    """
    if session is None or not session.in_transaction():
        return False
    if work.is_async and not _can_await(session):
        raise AsyncReceiversInEventLoopError(
            f"Cannot defer {work.name} to the commit of {_describe_session(session)}: it is "
            "async, and this sync Session runs in a thread whose event loop is running, so its "
            "commit could not await it. Use an AsyncSession, or a sync callable."
        )
    queues: dict[SessionTransaction, _Queue] = session.info.setdefault(_QUEUES_KEY, {})
    owner = _owner(session)
    queue = queues.get(owner)
    if queue is None:
        queue = queues[owner] = _Queue()
    queue.work.append(work)
    if _captures:
        _offer_to_captures(work, session)
    return True


def _offer_to_captures(work: Work, session: Session) -> None:
    with _captures_lock:
        for capture in reversed(_captures):
            if capture.session is None or capture.session is session:
                work.capture = capture
                capture.work.append(work)
                return


def _can_await(session: Session) -> bool:
    if in_greenlet() or not in_running_loop():
        return True
    from sqlalchemy.ext.asyncio import async_session

    return async_session(session) is not None


def on_commit(func: Callable[[], Any], *, session: Any = None) -> None:
    """Call ``func()`` after the current transaction commits; now if none is open.

    The transaction is that of ``session``, else of the Session bound by
    :func:`in_transaction`, else of the Session open in the calling thread or task (see the
    module's rules). An async function is awaited (under ``AsyncSession``, before
    ``await session.commit()`` returns).

    Args:
        func: A callable taking no arguments (``functools.partial`` for arguments).
        session: A ``Session`` or ``AsyncSession``.

    Raises:
        InvalidReceiverError: ``func`` is not callable.
        AmbiguousSessionError: no ``session``, none bound, and two Sessions are open here.
        AsyncReceiversInEventLoopError: ``func`` is async and must run now (or at the commit
            of a sync Session) in a thread whose event loop is running.
    """
    if not callable(func):
        raise InvalidReceiverError(f"on_commit() needs a callable, not {func!r}")
    work = Work(func, name=describe(func), is_async=is_async_callable(func))
    if not defer(work, current_session(session)):
        run_now(work)


def run_now(work: Work) -> None:
    """Call ``work`` at once, letting its exception propagate.

    Raises:
        AsyncReceiversInEventLoopError: it is async and the thread's event loop is running
            outside SQLAlchemy's greenlet.
    """
    bridged = work.is_async and in_greenlet()
    if work.is_async and not bridged and in_running_loop():
        raise AsyncReceiversInEventLoopError(
            f"Cannot call {work.name} now: it is async, no transaction is open and this "
            "thread's event loop is running; await it instead."
        )
    result = work.func()
    # A receiver that died before the commit returns None instead of a coroutine.
    if work.is_async and inspect.isawaitable(result):
        if bridged:
            await_(result)
        else:
            run_concurrently([result])


def run_robustly(work: list[Work], where: str) -> None:
    """Call each of ``work`` in order, logging (not raising) each one's ``Exception``."""
    for item in work:
        try:
            run_now(item)
        except Exception:
            logger.exception("Error in %s, called after the commit of %s", item.name, where)


# -- the Session events -------------------------------------------------------------------------


def after_transaction_create(session: Session, transaction: SessionTransaction) -> None:
    """Session ``after_transaction_create``: note a root transaction open in this context."""
    if transaction.parent is not None:
        return
    live = [entry for entry in _open.get() if _still_open(entry)]
    live.append((weakref.ref(session), weakref.ref(transaction)))
    _open.set(tuple(live))


def _still_open(entry: _Entry) -> bool:
    session = entry[0]()
    transaction = entry[1]()
    return (
        session is not None and transaction is not None and session.get_transaction() is transaction
    )


def after_commit(session: Session) -> None:
    """Session ``after_commit``: the work of the committed transaction may run at its end."""
    queues: dict[SessionTransaction, _Queue] | None = session.info.get(_QUEUES_KEY)
    if queues:
        queue = queues.get(_owner(session))
        if queue is not None:
            queue.committed = True


def after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    """Session ``after_transaction_end``: run, hand over or drop the transaction's work."""
    parent = transaction.parent
    if parent is None:
        entries = _open.get()
        if entries:
            _open.set(tuple(entry for entry in entries if _still_open(entry)))
    queues: dict[SessionTransaction, _Queue] | None = session.info.get(_QUEUES_KEY)
    if not queues:
        return
    queue = queues.pop(transaction, None)
    if queue is None:
        return
    if not queue.committed:
        for work in queue.work:
            work.dropped = True
        return
    if parent is not None:
        while parent.parent is not None and not parent.nested:
            parent = parent.parent
        target = queues.get(parent)
        if target is None:
            target = queues[parent] = _Queue()
        target.work.extend(queue.work)
        return
    ready = [work for work in queue.work if work.capture is None]
    if not ready:
        return
    # Inside ``with session.begin():`` this runs from the block's __exit__, before the commit
    # returns: the transaction is over, so the work runs outside the block's hold on it.
    with outside_begin_block(session, transaction):
        run_robustly(ready, _describe_session(session))
