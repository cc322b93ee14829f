"""The awaiting: running async receivers from sync code and sync receivers from async code.

No asgiref: sync code runs async receivers in a fresh event loop of their own; async
code runs a batch of sync receivers in the running loop's default executor, inside a copy of the
caller's context whose changes are written back afterwards, as asgiref's ``sync_to_async`` does.

The async receivers of one send run as Django 6.1 runs them (its ``TaskGroup``, ticket 36714):

* concurrently, as tasks that share one copy of the caller's context, so each sees the context
  changes of those that ran before it; afterwards every changed variable is written back into
  the caller's context. (Python 3.10 cannot share a context between tasks: there each task has
  its own copy, and the copies' changes are written back in connection order.)
* when one fails, the others are cancelled and awaited before its exception propagates, so no
  receiver of a failed send keeps running after the send. The exception propagates unchanged
  (Django 6.1 raises an ``ExceptionGroup`` when several fail at once; tidings raises the first
  in connection order and logs the others to the ``tidings`` logger).
* when the send itself is cancelled, every receiver task is cancelled and awaited first.

An integration that drives async code from sync code running inside an event loop (SQLAlchemy's
``AsyncSession`` runs the sync ORM, and so the event hooks that send model signals, in a
greenlet of the loop) installs an *awaiter* with :func:`awaiting`: then ``send()`` and
``send_robust()`` called in that thread await their async receivers through it instead of
refusing, as the tasks described above (:func:`gather`), awaited through the awaiter.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_UNSET: Any = object()

logger = logging.getLogger("tidings")

Awaiter = Callable[[Awaitable[Any]], Any]
_awaiter: contextvars.ContextVar[Awaiter | None] = contextvars.ContextVar(
    "tidings_awaiter", default=None
)


@contextlib.contextmanager
def awaiting(await_: Callable[[Awaitable[T]], T]) -> Iterator[None]:
    """Let ``send()``/``send_robust()`` in a running loop's thread await through ``await_``.

    Args:
        await_: Awaits an awaitable from sync code and returns its result (for SQLAlchemy:
            ``sqlalchemy.util.await_only``, the greenlet bridge of ``AsyncSession``).

    Yields:
        Nothing; the awaiter applies to the calling context until the block ends.
    """
    token = _awaiter.set(await_)
    try:
        yield
    finally:
        _awaiter.reset(token)


def current_awaiter() -> Awaiter | None:
    """The awaiter installed by :func:`awaiting` in the calling context, if any."""
    return _awaiter.get()


def discard(awaitables: list[Any]) -> None:
    """Close coroutines that will never be awaited, so that none warns "never awaited"."""
    for awaitable in awaitables:
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        elif isinstance(awaitable, asyncio.Future):
            awaitable.cancel()


def in_running_loop() -> bool:
    """Whether the calling thread is running an event loop."""
    return asyncio._get_running_loop() is not None


def run_concurrently(awaitables: list[Awaitable[Any]]) -> list[Any]:
    """Await ``awaitables`` concurrently in a new event loop; return their results in order.

    Unlike :func:`asyncio.run`, the loop is never made the thread's current loop, so a loop the
    caller had set (not running) stays current. Context changes are written back into the
    calling thread's context; a failure cancels the other awaitables (see the module docstring).
    """
    contexts: list[contextvars.Context] = []
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_run_tasks(awaitables, contexts))
    finally:
        _write_back(contexts)
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
        _write_back([context])


async def gather(awaitables: list[Awaitable[Any]]) -> list[Any]:
    """Await ``awaitables`` concurrently in the running loop; return their results in order.

    They share a copy of the caller's context, whose changes are written back; the first
    failure cancels the others (see the module docstring).
    """
    contexts: list[contextvars.Context] = []
    try:
        return await _run_tasks(awaitables, contexts)
    finally:
        _write_back(contexts)


def _write_back(contexts: list[contextvars.Context]) -> None:
    """Set every variable that ``contexts`` changed in the current context, in order."""
    for context in contexts:
        for var, value in context.items():
            if var.get(_UNSET) is not value:
                var.set(value)


async def _run_tasks(
    awaitables: list[Awaitable[Any]], contexts: list[contextvars.Context]
) -> list[Any]:
    """Run ``awaitables`` as tasks; append the contexts to write back to ``contexts``."""
    if not awaitables:
        return []
    loop = asyncio.get_running_loop()
    # Python 3.11 added create_task(context=...), which lets the tasks of one send share one.
    ends: list[contextvars.Context | None] = []
    if sys.version_info >= (3, 11):
        shared = contextvars.copy_context()
        contexts.append(shared)
        tasks = [loop.create_task(_as_coroutine(a), context=shared) for a in awaitables]
    else:
        ends = [None] * len(awaitables)
        tasks = [loop.create_task(_recording(a, ends, i)) for i, a in enumerate(awaitables)]
    try:
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            # Cancelled from outside, or a task failed: nothing may outlive the send.
            pending = [task for task in tasks if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
    finally:
        contexts.extend(c for c in ends if c is not None)
    failures = [e for e in (t.exception() for t in tasks if not t.cancelled()) if e is not None]
    if failures:
        for other in failures[1:]:
            logger.error(
                "Another async receiver failed in the same send (%s); the first failure propagates",
                other,
                exc_info=other,
            )
        raise failures[0]
    return [task.result() for task in tasks]


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


async def _recording(
    awaitable: Awaitable[T], ends: list[contextvars.Context | None], index: int
) -> T:
    """Await ``awaitable``; record the task's context at the end (Python 3.10)."""
    try:
        return await awaitable
    finally:
        ends[index] = contextvars.copy_context()
