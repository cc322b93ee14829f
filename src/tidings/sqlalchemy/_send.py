"""Sending a model signal from inside SQLAlchemy's (synchronous) event hooks.

SQLAlchemy calls its event listeners synchronously, also under ``AsyncSession``: there the
listener runs inside the greenlet that ``AsyncSession`` uses to drive the sync ORM from the event
loop. A plain :meth:`~tidings.Signal.send` refuses to run async receivers in a thread whose event
loop is running, so when that happens inside the bridge this module calls the sync receivers
inline (they may use the session, which is only usable from the bridge) and then awaits the
async receivers concurrently through SQLAlchemy's ``await_``, blocking the listener (not the
loop) until they finish. When one of them raises, the others are cancelled and awaited before
the error propagates (and aborts the flush), as ``send()`` does in its own loop: nothing a
failed flush's receivers do runs after it. Outside the bridge the error propagates unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from sqlalchemy import exc as sa_exc

from tidings import AsyncReceiversInEventLoopError, Signal
from tidings.sqlalchemy._compat import await_

__all__ = ["quiet", "send"]


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
            loop thread outside AsyncSession's greenlet (a sync Session used in async code);
            the message says to use ``AsyncSession``.
    """
    try:
        signal.send(sender, **named)
    except AsyncReceiversInEventLoopError:
        # Raised before any receiver ran, so running them all here calls each one once.
        if not _in_bridge():
            # The core's advice ("await signal.asend()") cannot be followed from ORM code.
            raise AsyncReceiversInEventLoopError(
                f"{signal!r} has async receivers for sender {sender!r}, and a sync Session "
                "used inside a running event loop cannot await them; use "
                "sqlalchemy.ext.asyncio.AsyncSession in async code. No receiver was called."
            ) from None
        _send_bridged(signal, sender, named)


def _in_bridge() -> bool:
    probe = asyncio.sleep(0)
    try:
        await_(probe)
    except sa_exc.MissingGreenlet:
        return False
    return True


def _send_bridged(signal: Signal, sender: Any, named: dict[str, Any]) -> None:
    pending: list[Coroutine[Any, Any, Any]] = []
    try:
        for info in signal.live_receivers(sender):
            result = info.receiver(signal=signal, sender=sender, **named)
            if info.is_async:
                pending.append(result)
    except BaseException:
        for coroutine in pending:
            coroutine.close()  # never started: nothing to cancel, no "never awaited" warning
        raise
    if pending:
        await_(_all_or_nothing(pending))


async def _all_or_nothing(coroutines: list[Coroutine[Any, Any, Any]]) -> None:
    """Await ``coroutines`` concurrently; when one fails, cancel and await the others.

    A plain ``gather`` would propagate the first error and leave the others running after
    the flush failed, free to write to the session of a later, unrelated transaction.
    """
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
