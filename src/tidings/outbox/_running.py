"""What the relay and the consumer share: a blocking ``run()`` that also runs in a thread.

:class:`InLoop` adds ``async with`` for a worker that has an ``arun()``: a task of the running
event loop instead of a thread, for async apps (an ASGI lifespan, for one).

One run at a time: :meth:`Background.start`, ``async with`` and (for a worker that takes its
run, as the relay does) ``run()`` and ``arun()`` refuse to begin while another run of the same
object goes on, with a :class:`~tidings._errors.TidingsRuntimeError`. Stopping: :meth:`stop`
ends the run going on; called while none is, it ends the next ``run()``/``arun()`` as that
begins (a signal handler's stop just before the run is not lost). A run clears the request as
it ends, so a stopped worker runs again; :meth:`start` and ``async with`` begin afresh,
dropping a stop made before them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable
from types import TracebackType
from typing import TypeVar

from tidings._errors import TidingsRuntimeError

__all__ = ["Background", "InLoop"]

logger = logging.getLogger("tidings.outbox")

_B = TypeVar("_B", bound="Background")
_L = TypeVar("_L", bound="InLoop")


class Background:
    """A worker whose :meth:`run` blocks until :meth:`stop`; :meth:`start` runs it in a thread.

    Subclasses set ``name`` and implement ``run(once=False)``, checking :attr:`stopping`; one
    that takes its run (:meth:`_take_run`, then :meth:`_run_taken`) refuses a second
    concurrent run.
    """

    name: str

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._run_lock = threading.Lock()  # guards _running only; stop() never takes it
        self._running = False
        #: The exception that ended a run in a thread, if any.
        self.error: BaseException | None = None

    def run(self, *, once: bool = False) -> None:
        """Work in the calling thread until :meth:`stop` (or, with ``once``, until idle)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Ask it to stop once the work in hand is done (thread-safe).

        With no run going on, the next ``run()`` returns as it begins.
        """
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called (and the run it stops has not ended yet)."""
        return self._stopping.is_set()

    def start(self: _B) -> _B:
        """Run it in a daemon thread; :meth:`close` (or ``with``) stops it.

        Returns:
            Itself.

        Raises:
            TidingsRuntimeError: It runs already (in a thread, or a run of its own).
        """
        if self._thread is not None:
            raise TidingsRuntimeError(f"{self!r} is already running (in a thread)")
        self._take_run()
        self._stopping.clear()
        thread = threading.Thread(target=self._run_in_thread, name=self.name, daemon=True)
        try:
            thread.start()
        except BaseException:
            self._end_run()
            raise
        self._thread = thread
        return self

    def close(self, timeout: float | None = None) -> None:
        """Stop the thread :meth:`start` began and wait for it (the work in hand finishes).

        Raises:
            BaseException: What ended the thread, if it failed.
        """
        thread = self._thread
        self.stop()
        if thread is not None:
            thread.join(timeout)
            self._thread = None
            if not thread.is_alive():
                self._forget_stop()
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

    # -- one run at a time ----------------------------------------------------------------

    def _take_run(self) -> None:
        """Begin a run, or raise if one goes on; :meth:`_end_run` ends it."""
        with self._run_lock:
            if self._running:
                raise TidingsRuntimeError(
                    f"{self!r} is already running: one run at a time (stop it and wait for it, "
                    "or build another)"
                )
            self._running = True

    def _end_run(self) -> None:
        with self._run_lock:
            # The request that ended this run is done, and cleared before the next run can
            # begin (a stop issued to that one stays).
            self._stopping.clear()
            self._running = False

    def _forget_stop(self) -> None:
        """Drop a stop that came after the run it was for had ended (its thread or task died)."""
        with self._run_lock:
            if not self._running:
                self._stopping.clear()

    def _run_taken(self, once: bool) -> None:
        """Run, the run taken by the caller; end it when done."""
        try:
            self.run(once=once)
        finally:
            self._end_run()

    def _run_in_thread(self) -> None:
        try:
            self._run_taken(False)
        except BaseException as exc:
            logger.exception("%r stopped on an error", self)
            self.error = exc


class InLoop(Background):
    """A :class:`Background` with an ``arun()``; ``async with`` runs it as a task of the loop.

    Entering starts ``arun()`` as a task of the running event loop (where ``with`` starts a
    thread); leaving stops it as :meth:`stop` does (the work in hand finishes) and waits for
    the task, raising what ended it if it failed. A task that fails before the block ends is
    logged as it fails ("stopped on an error", as a thread's run is), and raised on exit.
    """

    _task: asyncio.Future[None] | None = None

    async def arun(self, *, once: bool = False) -> None:
        """Work from async code until :meth:`stop` (or, with ``once``, until idle)."""
        raise NotImplementedError

    def _start_arun(self, once: bool) -> Awaitable[None]:
        """Begin an ``arun()``, the run taken by the caller; return what awaits its end.

        It ends the run itself if it cannot begin it.
        """
        raise NotImplementedError

    async def __aenter__(self: _L) -> _L:
        if self._task is not None or self._thread is not None:
            raise TidingsRuntimeError(f"{self!r} is already running")
        self._take_run()
        self._stopping.clear()
        task = asyncio.ensure_future(self._start_arun(False))
        task.add_done_callback(self._report)
        self._task = task
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
        try:
            await task
        finally:
            if task.done():
                self._forget_stop()

    def _report(self, task: asyncio.Future[None]) -> None:
        # At once: in an ASGI lifespan the block lasts as long as the app, which would run
        # with no relay and no word of it until shutdown. The exit still raises it.
        if not task.cancelled() and task.exception() is not None:
            logger.error("%r stopped on an error", self, exc_info=task.exception())
