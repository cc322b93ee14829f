"""Sending a model signal from inside SQLAlchemy's (synchronous) event hooks.

SQLAlchemy calls its event listeners synchronously, also under ``AsyncSession``: there the
listener runs inside the greenlet that ``AsyncSession`` uses to drive the sync ORM from the event
loop. A plain :meth:`~tidings.Signal.send` refuses to run async receivers in a thread whose event
loop is running; inside the bridge this module sends again under the core's awaiter
(:func:`tidings._async.awaiting`) with SQLAlchemy's ``await_``: the core calls the sync receivers
inline (they may use the session, which is only usable from the bridge) and awaits the async
ones concurrently through the bridge, blocking the listener (not the loop) until they finish.
If one fails, the others are cancelled and awaited first, so none keeps running after the flush
failed. Outside the bridge the error propagates unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import exc as sa_exc

from tidings import AsyncReceiversInEventLoopError, Signal
from tidings._async import awaiting
from tidings.sqlalchemy._compat import await_

__all__ = ["quiet", "resend", "send"]


def quiet(signal: Signal) -> bool:
    """Return True when ``signal`` has no connection at all (the per-row fast path).

    ``Signal.has_listeners()`` costs a few hundred nanoseconds; per loaded row that alone is
    several percent of SQLAlchemy's own work, so callers check this first.
    """
    return not signal.has_connections()


def send(signal: Signal, sender: Any, **named: Any) -> None:
    """Send ``signal`` from an ORM event hook, awaiting async receivers under AsyncSession.

    Receivers' exceptions propagate unchanged, which makes SQLAlchemy abandon the flush.

    Args:
        signal: The signal to send.
        sender: The model class.
        **named: The signal's keyword arguments.

    Raises:
        AsyncReceiversInEventLoopError: async receivers match and the hook runs in an event
            loop thread outside AsyncSession's greenlet (a sync Session used in async code);
            the message says to use ``AsyncSession``.
    """
    try:
        signal.send(sender, **named)
    except AsyncReceiversInEventLoopError as error:
        resend(signal, sender, error, **named)


def resend(
    signal: Signal, sender: Any, error: AsyncReceiversInEventLoopError, **named: Any
) -> None:
    """Handle ``error`` from ``signal.send(sender, **named)`` as :func:`send` does.

    For the per-row call sites, which call ``signal.send()`` directly (one Python call and one
    keyword dict less per row than :func:`send`) and hand this the rare refusal.

    Raises:
        AsyncReceiversInEventLoopError: as for :func:`send`.
    """
    # Raised before any receiver ran, so sending again here calls each one once.
    if error.receivers_called:
        raise error
    if not _in_bridge():
        # The core's advice ("await signal.asend()") cannot be followed from ORM code.
        raise AsyncReceiversInEventLoopError(
            f"{signal!r} has async receivers for sender {sender!r}, and a sync Session "
            "used inside a running event loop cannot await them; use "
            "sqlalchemy.ext.asyncio.AsyncSession in async code. No receiver was called."
        ) from None
    with awaiting(await_):
        signal.send(sender, **named)


def _in_bridge() -> bool:
    probe = asyncio.sleep(0)
    try:
        await_(probe)
    except sa_exc.MissingGreenlet:
        return False
    return True
