"""What the relay and the consumer share: a blocking ``run()`` that also runs in a thread.

:class:`InLoop` adds ``async with`` for a worker that has an ``arun()``: a task of the running
event loop instead of a thread, for async apps (an ASGI lifespan, for one).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from types import TracebackType
from typing import TypeVar

from tidings._errors import TidingsRuntimeError

__all__ = ["Background", "InLoop"]

logger = logging.getLogger("tidings.outbox")

_B = TypeVar("_B", bound="Background")
_L = TypeVar("_L", bound="InLoop")


class Background:
    """A worker whose :meth:`run` blocks until :meth:`stop`; :meth:`start` runs it in a thread.

    Subclasses set ``name`` and implement ``run(once=False)``, checking :attr:`stopping`.
    """

    name: str

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        #: The exception that ended a run in a thread, if any.
        self.error: BaseException | None = None

    def run(self, *, once: bool = False) -> None:
        """Work in the calling thread until :meth:`stop` (or, with ``once``, until idle)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Ask it to stop once the work in hand is done (thread-safe)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stopping.is_set()

    def start(self: _B) -> _B:
        """Run it in a daemon thread; :meth:`close` (or ``with``) stops it.

        Returns:
            Itself.

        Raises:
            TidingsRuntimeError: It runs in a thread already.
        """
        if self._thread is not None:
            raise TidingsRuntimeError(f"{self!r} is running already")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run_in_thread, name=self.name, daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float | None = None) -> None:
        """Stop the thread :meth:`start` began and wait for it (the work in hand finishes).

        Raises:
            BaseException: What ended the thread, if it failed.
        """
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def __enter__(self: _B) -> _B:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run_in_thread(self) -> None:
        try:
            self.run()
        except BaseException as exc:
            logger.exception("%r stopped on an error", self)
            self.error = exc


class InLoop(Background):
    """A :class:`Background` with an ``arun()``; ``async with`` runs it as a task of the loop.

    Entering starts ``arun()`` as a task of the running event loop (where ``with`` starts a
    thread); leaving stops it as :meth:`stop` does (the work in hand finishes) and waits for
    the task, raising what ended it if it failed.
    """

    _task: asyncio.Task[None] | None = None

    async def arun(self, *, once: bool = False) -> None:
        """Work from async code until :meth:`stop` (or, with ``once``, until idle)."""
        raise NotImplementedError

    async def __aenter__(self: _L) -> _L:
        if self._task is not None or self._thread is not None:
            raise TidingsRuntimeError(f"{self!r} is running already")
        self._stopping.clear()
        self._task = asyncio.ensure_future(self.arun())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        assert task is not None
        self.stop()
        await task
