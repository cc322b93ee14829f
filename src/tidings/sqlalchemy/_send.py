"""Sending a model signal from inside SQLAlchemy's (synchronous) event hooks.

SQLAlchemy calls its event listeners synchronously, also under ``AsyncSession``: there the
listener runs inside the greenlet that ``AsyncSession`` uses to drive the sync ORM from the event
loop. A plain :meth:`~tidings.Signal.send` refuses to run async receivers in a thread whose event
loop is running, so when that happens inside the bridge this module calls the sync receivers
inline (they may use the session, which is only usable from the bridge) and then awaits the
async receivers concurrently through SQLAlchemy's ``await_``, blocking the listener (not the
loop) until they finish. Outside the bridge the error propagates unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import util as sa_util

from tidings import AsyncReceiversInEventLoopError, Signal

__all__ = ["quiet", "send"]

# SQLAlchemy 2.1 renamed ``await_only`` to ``await_``; 2.0 only has the old name.
_await: Any = getattr(sa_util, "await_", None) or sa_util.await_only


def quiet(signal: Signal) -> bool:
    """Return True when ``signal`` has no connection at all (the per-row fast path).

    ``Signal.has_listeners()`` costs a few hundred nanoseconds; per loaded row that alone is
    several percent of SQLAlchemy's own work. The core keeps ``_state`` None exactly when
    nothing is connected; if that attribute ever goes away this answers False and callers
    fall back to ``has_listeners``.
    """
    return getattr(signal, "_state", True) is None


def send(signal: Signal, sender: Any, **named: Any) -> None:
    """Send ``signal`` from an ORM event hook, awaiting async receivers under AsyncSession.

    Receivers' exceptions propagate unchanged, which makes SQLAlchemy abandon the flush.

    Args:
        signal: The signal to send.
        sender: The model class.
        **named: The signal's keyword arguments.

    Raises:
        AsyncReceiversInEventLoopError: async receivers match and the hook runs in an event
            loop thread outside AsyncSession's greenlet (a sync Session used in async code).
    """
    try:
        signal.send(sender, **named)
    except AsyncReceiversInEventLoopError:
        # Raised before any receiver ran, so running them all here calls each one once.
        if not _in_bridge():
            raise
        _send_bridged(signal, sender, named)


def _in_bridge() -> bool:
    probe = asyncio.sleep(0)
    try:
        _await(probe)
    except sa_exc.MissingGreenlet:
        return False
    return True


def _send_bridged(signal: Signal, sender: Any, named: dict[str, Any]) -> None:
    pending: list[Awaitable[Any]] = []
    for info in signal.live_receivers(sender):
        result = info.receiver(signal=signal, sender=sender, **named)
        if info.is_async:
            pending.append(result)

    async def gather() -> None:
        await asyncio.gather(*pending)

    if pending:
        _await(gather())
