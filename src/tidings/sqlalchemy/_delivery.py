"""``delivery="on_commit"`` receivers: the handler ``tidings.sqlalchemy`` registers in the core.

A receiver connected with ``delivery="on_commit"`` is handed here, once per send (see
``docs/delivery-seam.md``); this module turns it into on-commit work of :mod:`._transactions`,
so it follows exactly the rules of :func:`tidings.sqlalchemy.on_commit`:

* **Which transaction** (:func:`session_for_send`): a model signal whose instance belongs to a
  Session that is flushing joins that Session's transaction (the rows the flush writes), and
  a bulk statement's ``post_bulk_update``/``post_bulk_delete`` the executing Session's; any
  other send joins the Session :func:`~tidings.sqlalchemy.current_session` chooses (bound by
  ``in_transaction()``, else the only one open in the calling thread or task; two is an
  :class:`~tidings.sqlalchemy.AmbiguousSessionError` naming both). None open: the handler
  declines, and the core calls the receiver at once, in its place.
* **When**: after the outermost commit succeeded, once, with exactly the send's arguments, in
  send order, where the Session is usable again; never after a rollback, a failing commit or
  ``close()``. A savepoint rolled back drops what was sent inside it.
* **Robust**: an ``Exception`` of the receiver is logged to the ``tidings.sqlalchemy`` logger
  (a child of ``tidings``), naming the receiver and the signal, with the traceback.
* **Weak receivers** are held weakly until the commit: one that died by then is skipped.
* **Async receivers** are awaited at the commit (under ``AsyncSession`` before ``await
  session.commit()`` returns).

The mode takes no options: any is a :class:`~tidings.DeliveryOptionsError` at connect time.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from sqlalchemy.orm import Session
from sqlalchemy.orm.state import InstanceState

from tidings._delivery import Deferral, Delivery, refuse_options, register_handler
from tidings._refs import safe_repr
from tidings.models import ModelSignal
from tidings.sqlalchemy._compat import STATE_ATTR, is_flushing
from tidings.sqlalchemy._transactions import Work, current_session, defer

__all__ = ["OnCommitHandler", "install", "sending_for", "session_for_send"]


_sending: contextvars.ContextVar[Session | None] = contextvars.ContextVar(
    "tidings_sqlalchemy_sending", default=None
)


@contextlib.contextmanager
def sending_for(session: Session) -> Iterator[None]:
    """Mark the sends of the block as made by ``session`` (an ORM hook that knows its Session).

    For the model signals whose arguments do not lead to it (``post_bulk_update``), and the
    sends their receivers make while they run.
    """
    token = _sending.set(session)
    try:
        yield
    finally:
        _sending.reset(token)


def session_for_send(signal: Any, kwargs: Mapping[str, Any]) -> Session | None:
    """The Session whose transaction a send's deferred receivers join, or None if none is open.

    In order: the Session of an enclosing :func:`sending_for` block (a bulk statement's); for
    a model signal, the flushing Session its ``instance`` belongs to; else
    :func:`~tidings.sqlalchemy.current_session`.

    Args:
        signal: The signal sent.
        kwargs: The send's keyword arguments (``instance=`` is read for model signals).

    Raises:
        AmbiguousSessionError: none of the first two applies, no Session is bound, and two
            Sessions have a transaction open in the calling thread or task.
    """
    session = _sending.get()
    if session is None and isinstance(signal, ModelSignal):
        session = _flushing_session_of(kwargs.get("instance"))
    if session is not None:
        return session if session.in_transaction() else None
    return current_session()


def _flushing_session_of(instance: Any) -> Session | None:
    # The state attribute, not sqlalchemy.inspect(): this runs once per row a flush signals.
    state = getattr(instance, STATE_ATTR, None)
    if not isinstance(state, InstanceState):
        return None
    session = state.session
    if session is not None and is_flushing(session):
        return session
    return None


class _Call:
    """The deferred call of one receiver: ``receiver(**kwargs)``, skipped if it died."""

    __slots__ = ("deferral",)

    def __init__(self, deferral: Deferral) -> None:
        self.deferral = deferral

    def __call__(self) -> Any:
        receiver = self.deferral.receiver()
        if receiver is None:
            return None  # a weakly connected receiver that died before the commit
        return receiver(**self.deferral.kwargs)

    def __repr__(self) -> str:
        return f"<on_commit call of {self.deferral.name} for {safe_repr(self.deferral.signal)}>"


class OnCommitHandler:
    """The :class:`~tidings._delivery.DeliveryHandler` of ``Delivery.ON_COMMIT``."""

    def validate(
        self, signal: Any, receiver: Callable[..., Any], options: Mapping[str, Any]
    ) -> None:
        """Refuse any option: ``delivery="on_commit"`` takes none.

        Raises:
            DeliveryOptionsError: options were given; the message names them, the receiver and
                the signal.
        """
        refuse_options(Delivery.ON_COMMIT, signal, receiver, options)

    def defer(self, deferral: Deferral) -> bool:
        """Queue the receiver for the commit of the send's Session; False if none is open."""
        session = session_for_send(deferral.signal, deferral.kwargs)
        if session is None:
            return False
        name = f"{deferral.name} (receiver of {safe_repr(deferral.signal)})"
        return defer(Work(_Call(deferral), name=name, is_async=deferral.is_async), session)


_handler = OnCommitHandler()


def install() -> None:
    """Register the handler of ``Delivery.ON_COMMIT`` (idempotent)."""
    register_handler(Delivery.ON_COMMIT, _handler)
