"""The producer's side of ``delivery="durable"``: the delivery handler and the installed outbox.

``tidings.outbox`` registers an :class:`OutboxHandler` for ``Delivery.DURABLE`` when it is
imported. ``queue`` and ``broadcast`` receivers go through the same handler class with their
own mode: every one of them is stored in the outbox the same way.

At connect time the handler checks the options and the stable names (the receiver's dotted
``module.qualname`` or ``name=``, the signal's ``name``) and registers the receiver, so a worker
of this process knows it. At send time it encodes the arguments at once (a
:class:`~tidings.outbox.PayloadTypeError` propagates from the send, inside the sender's transaction)
and writes one row for the receiver:

1. on the connection of the Session whose transaction the send joins, in that transaction: the
   Session chosen as for ``delivery="on_commit"`` receivers
   (``tidings.sqlalchemy._delivery.session_for_send``): for a model signal the flushing
   Session its ``instance`` belongs to, for ``post_bulk_update``/``post_bulk_delete`` the
   Session executing the statement, else ``tidings.sqlalchemy.current_session`` (the one bound
   by ``tidings.sqlalchemy.in_transaction``, or the only open one).
   Under ``AsyncSession`` outside SQLAlchemy's greenlet (a signal sent from async code) the row
   is kept on the Session and written when that transaction or savepoint commits, still inside
   it; a rollback drops it;
2. else on the connection bound by :func:`writing_on` (Core code), in its transaction;
3. else in a short transaction of its own through the installed outbox's engine, committed
   before the send goes on.

Rows go to the outbox made current by :meth:`Outbox.install` (one per process); a durable send
with none installed raises :class:`~tidings.outbox.OutboxNotInstalledError`, so nothing is dropped
silently.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import hashlib
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import UnboundExecutionError
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.util import concurrency

from tidings._delivery import Deferral, Delivery
from tidings._errors import (
    DeliveryOptionsError,
    NoStableNameError,
    OutboxNotInstalledError,
    PayloadTypeError,
    TidingsValueError,
)
from tidings._refs import describe, is_async_callable
from tidings.http import got_request_exception, request_started
from tidings.models import post_bulk_delete, post_bulk_update
from tidings.outbox._codec import encode, instance_key
from tidings.outbox._outbox import installed_outbox
from tidings.outbox._receivers import DurableReceiver, receiver_name, register
from tidings.outbox._store import Store
from tidings.sqlalchemy._delivery import session_for_send

__all__ = ["OPTIONS", "OutboxHandler", "writing_on"]

#: The options every outbox mode takes at connect.
OPTIONS = frozenset({"name", "max_attempts", "backoff", "backoff_max", "timeout", "ordered"})

# tidings' own signals whose every send carries an argument the outbox cannot store: a receiver
# stored for them would fail each send (from send_robust too, which the middleware uses), so
# connect() refuses it at once. Signals of the application are checked at send time.
_UNSTORABLE: tuple[tuple[Any, str, str], ...] = (
    (post_bulk_update, "'statement'", "the SQLAlchemy statement executed"),
    (post_bulk_delete, "'statement'", "the SQLAlchemy statement executed"),
    (request_started, "'environ' (WSGI) or 'scope' (ASGI)", "with streams and bytes in it"),
    (got_request_exception, "'request'", "a tidings.http.Request, and 'exception'"),
)

_bound: contextvars.ContextVar[Connection | None] = contextvars.ContextVar(
    "tidings_outbox_connection", default=None
)
_BUFFER_KEY = "tidings.outbox.buffered"  # Session.info: {SessionTransaction: [(store, row)]}


@contextlib.contextmanager
def writing_on(connection: Connection) -> Iterator[Connection]:
    """Write the durable sends of the ``with`` block on ``connection``, in its transaction.

    For Core code that runs its own ``Connection`` rather than a Session. A Session with a
    transaction open in the same context still wins (it is more specific to the send).

    Args:
        connection: The ``Connection``. A send while it has no transaction begun begins one,
            as any statement on it would: the row commits or rolls back with what follows.

    Yields:
        ``connection``.
    """
    token = _bound.set(connection)
    try:
        yield connection
    finally:
        _bound.reset(token)


class OutboxHandler:
    """The delivery handler of the modes stored in the outbox (``durable`` by default).

    Args:
        mode: The mode handled; stored in each row, so relays tell the modes apart.
        options: Options this mode takes besides :data:`OPTIONS`.
        check: Called as ``check(signal, receiver, options)`` after the common checks, to
            refuse a connection with a mode's own rules.
    """

    def __init__(
        self,
        mode: Delivery = Delivery.DURABLE,
        *,
        options: Iterable[str] = (),
        check: Callable[[Any, Callable[..., Any], Mapping[str, Any]], None] | None = None,
    ) -> None:
        self.mode = mode
        self.options = OPTIONS | frozenset(options)
        self.check = check

    def __repr__(self) -> str:
        return f"<OutboxHandler {self.mode.value!r}>"

    def _where(self, signal: Any, receiver: Callable[..., Any]) -> str:
        mode = self.mode.value
        return f"Cannot connect {describe(receiver)} to {signal!r} with delivery={mode!r}"

    def validate(
        self, signal: Any, receiver: Callable[..., Any], options: Mapping[str, Any]
    ) -> None:
        """Check the options and the stable names; register the receiver for the workers.

        Raises:
            DeliveryOptionsError: An option this mode does not take.
            PayloadTypeError: The signal is one of tidings' whose sends always carry an argument
                the outbox cannot store (the bulk and request signals).
            NoStableNameError: The receiver or the signal has no stable name.
            ValueError: An option's value is wrong, or another receiver of the signal has the
                same name.
        """
        where = self._where(signal, receiver)
        unknown = sorted(set(options) - self.options)
        if unknown:
            raise DeliveryOptionsError(
                f"{where}: unknown option(s) {', '.join(unknown)}; it takes "
                f"{', '.join(sorted(self.options))}."
            )
        for known, argument, what in _UNSTORABLE:
            if signal is known:
                raise PayloadTypeError(
                    f"{where}: every send of it carries {argument} ({what}), which "
                    "the outbox cannot store. Connect it with delivery='on_commit' (after the "
                    "commit, in this process), or connect an on_commit receiver that sends a "
                    "signal of your own with storable arguments (ids, not objects) to a durable "
                    "receiver."
                )
        if not getattr(signal, "name", None):
            raise NoStableNameError(
                f"{where}: the signal has no name, and a worker finds a signal by its name. "
                "Create it with Signal(name='app.event')."
            )
        name = options.get("name")
        if name is None:
            name = receiver_name(receiver)
            if name is None:
                raise NoStableNameError(
                    f"{where}: it has no stable name a worker could find it by (a lambda, a "
                    "function defined inside another one, or a method of an instance). Define "
                    "it at module level (or as a method of a class, connected as Class.method), "
                    "or pass name='app.receiver' and connect it under that name in the "
                    "worker's process too."
                )
        elif not isinstance(name, str) or not name.strip():
            raise TidingsValueError(f"{where}: name= must be a non-empty string, got {name!r}")
        timeout = options.get("timeout")
        if timeout is not None and not is_async_callable(receiver):
            raise TidingsValueError(
                f"{where}: timeout= applies to async receivers only (a worker cannot interrupt "
                "a sync function); drop it, or make the receiver async def."
            )
        keys = ("max_attempts", "backoff", "backoff_max", "ordered")
        policy = {k: options[k] for k in keys if k in options}
        try:
            spec = DurableReceiver(
                signal, name, receiver, timeout=timeout, delivery=self.mode.value, **policy
            )
        except TidingsValueError as exc:
            raise type(exc)(f"{where}: {exc}") from None
        if self.check is not None:
            self.check(signal, receiver, options)
        register(spec)

    def defer(self, deferral: Deferral) -> bool:
        """Encode the send's arguments and store the delivery; always taken.

        Raises:
            PayloadTypeError: An argument cannot be stored; nothing was written.
            OutboxNotInstalledError: No outbox is installed.
            AmbiguousSessionError: Two Sessions have a transaction open here, none bound.
        """
        signal, name = deferral.signal, deferral.name
        outbox = installed_outbox()
        if outbox is None:
            raise OutboxNotInstalledError(
                f"{signal!r} cannot store its delivery for {self.mode.value} receiver {name}: no "
                "outbox is installed in this process. Call outbox.install() at startup (or use "
                "`with outbox.installed():`)."
            )
        named = dict(deferral.kwargs)
        del named["signal"]

        def where(argument: str) -> str:
            return f"{signal!r} cannot store argument {argument!r} for durable receiver {name}"

        payload = encode(named, where)
        ordered = deferral.options.get("ordered")
        key = order_key(ordered, named, where) if ordered else None
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        row = Store.row(uuid.uuid4(), signal.name, name, payload, now, self.mode.value, key)
        write(outbox._store, row, session_for_send(signal, deferral.kwargs))
        return True


def order_key(ordered: bool | str, named: dict[str, Any], where: Callable[[str], str]) -> str:
    """The ``order_key`` of a send for a receiver connected with ``ordered=``.

    Raises:
        TidingsValueError: ``ordered`` names an argument the send does not have.
    """
    if ordered is True:
        key = instance_key(named.get("instance")) or ""
    elif isinstance(ordered, str):
        if ordered not in named:
            raise TidingsValueError(
                f"{where(ordered)}: the receiver is ordered by it (ordered={ordered!r}), and the "
                "send does not pass it"
            )
        key = encode({ordered: named[ordered]}, where)
    else:
        key = ""
    # The column holds 255 characters; a longer key is replaced by its digest.
    return key if len(key) <= 255 else hashlib.sha256(key.encode()).hexdigest()


def write(store: Store, row: dict[str, Any], session: Session | None) -> None:
    """Write one prepared row in ``session``'s transaction, else as the module docstring says."""
    if session is not None:
        if _needs_greenlet(session):
            _keep(session, store, row)
            return
        store.insert_rows(_connection(session, store), [row])
        return
    bound = _bound.get()
    if bound is not None:  # a Connection that has not begun a transaction begins it here
        store.insert_rows(bound, [row])
        return
    with store.transaction(single=True) as own:  # one statement: autocommit on PostgreSQL
        store.insert_rows(own, [row])


def _connection(session: Session, store: Store) -> Connection:
    """The connection of ``session`` that the outbox's rows go on, in its transaction.

    The Session's own (its default bind's), unless the outbox's engine is another of its
    binds (``binds={Model: engine}``): then that one's, where the outbox's tables are. A
    Session bound to nothing writes through the outbox's engine.
    """
    engine = store.engine
    # Session.binds (SQLAlchemy 2.1), a private mapping before it; most Sessions have none.
    binds = getattr(session, "binds", None) or getattr(session, "_Session__binds", None)
    if binds and session.bind is not engine and any(b is engine for b in binds.values()):
        return session.connection(bind_arguments={"bind": engine})
    try:
        return session.connection()
    except UnboundExecutionError:
        return session.connection(bind_arguments={"bind": engine})


def _needs_greenlet(session: Session) -> bool:
    try:
        bind = session.get_bind()
    except UnboundExecutionError:
        return False
    if not bind.dialect.is_async:
        return False
    in_greenlet = getattr(concurrency, "in_greenlet", None)
    return not (in_greenlet is not None and in_greenlet())


def _keep(session: Session, store: Store, row: dict[str, Any]) -> None:
    owner = session.get_nested_transaction() or session.get_transaction()
    assert owner is not None  # session_for_send() returns Sessions in a transaction only
    kept: dict[SessionTransaction, list[tuple[Store, dict[str, Any]]]]
    kept = session.info.setdefault(_BUFFER_KEY, {})
    kept.setdefault(owner, []).append((store, row))


def _before_commit(session: Session) -> None:
    kept = session.info.pop(_BUFFER_KEY, None)
    if not kept:
        return
    # Committing a savepoint or the whole transaction: everything still kept belongs to it or
    # to a transaction around it, so it is written now, inside.
    by_store: dict[int, tuple[Store, list[dict[str, Any]]]] = {}
    for rows in kept.values():
        for store, row in rows:
            by_store.setdefault(id(store), (store, []))[1].append(row)
    for store, rows in by_store.values():
        store.insert_rows(_connection(session, store), rows)


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    kept = session.info.get(_BUFFER_KEY)
    if kept:
        kept.pop(transaction, None)  # still kept at its end: it was rolled back


_listening = False
_listen_lock = threading.Lock()


def listen() -> None:
    """Follow Session commits for the rows kept under AsyncSession (idempotent)."""
    global _listening
    with _listen_lock:
        if not _listening:
            event.listen(Session, "before_commit", _before_commit)
            event.listen(Session, "after_transaction_end", _after_transaction_end)
            _listening = True
