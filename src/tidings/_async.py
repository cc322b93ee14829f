"""The awaiting: running async receivers from sync code and sync receivers from async code.

No asgiref: sync code runs async receivers in a fresh event loop of their own; async
code runs a batch of sync receivers in the running loop's default executor, inside a copy of the
caller's context whose changes are written back afterwards, as asgiref's ``sync_to_async`` does.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

_UNSET: Any = object()


def in_running_loop() -> bool:
    """Whether the calling thread is running an event loop."""
    return asyncio._get_running_loop() is not None


def run_concurrently(awaitables: list[Awaitable[Any]]) -> list[Any]:
    """Await ``awaitables`` concurrently in a new event loop; return their results in order.

    Unlike :func:`asyncio.run`, the loop is never made the thread's current loop, so a loop the
    caller had set (not running) stays current. As with :func:`asyncio.run`, tasks still pending
    when the first failure ends the wait are cancelled before the loop closes.
    """

    async def gather() -> list[Any]:
        return list(await asyncio.gather(*awaitables))

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(gather())
    finally:
        try:
            pending = asyncio.all_tasks(loop)
            if pending:
                for task in pending:
                    task.cancel()
                loop.run_until_complete(_wait_cancelled(pending))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


async def _wait_cancelled(tasks: set[asyncio.Task[Any]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


async def run_in_thread(func: Callable[..., T], *args: Any) -> T:
    """Run ``func(*args)`` in the loop's default executor, sharing context changes back."""
    context = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(None, functools.partial(context.run, func, *args))
    finally:
        for var, value in context.items():
            if var.get(_UNSET) is not value:
                var.set(value)


async def gather(awaitables: list[Awaitable[Any]]) -> list[Any]:
    """Await ``awaitables`` concurrently in the running loop; return their results in order."""
    return list(await asyncio.gather(*awaitables))
