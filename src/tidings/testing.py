"""Test helpers: record the sends of a signal, silence signals, and a pytest plugin.

Works with any test framework; the assertion helpers raise :class:`AssertionError`.

* :func:`capture` connects a recorder for the duration of a ``with`` block and keeps every send
  it sees, in order, as :class:`Call` records. The recorder is a strongly referenced, sync,
  ``inline=True`` receiver placed *first* among the signal's receivers, so it records a send
  before any other receiver runs (even if one of them then raises), records nested sends in the
  order they were made, and runs on the event loop (not in a worker thread) under ``asend``.
  Other receivers are called exactly as without it; the only visible traces are one more
  ``(capture.record, None)`` pair at the head of the list ``send()`` returns and
  ``has_listeners()`` being true while it is active. The recorder is the bound method
  :meth:`Capture.record`, so code that reads ``__name__``, ``__qualname__`` or ``__module__``
  of the receivers in a send's responses works under a capture as it does without one. (It is
  not hidden from the responses: a capture must count as a listener, so that code sending only
  ``if signal.has_listeners()`` is recorded too.) Every capture has its own recorder, so it
  can never be deduplicated against another receiver or capture.
* :func:`muted` removes receivers from signals (all of them, or only the given ones) for a
  ``with`` block or around a decorated function, async function or test class, then restores
  the removed connections in their original places. Receivers connected while muted are live at
  once and stay connected afterwards, after the restored ones; a receiver connected again while
  muted under an identity that is being restored is dropped in favour of the original
  connection, as a repeated ``connect`` would be. Active captures are never muted.
* :func:`capture_on_commit` (Django's ``captureOnCommitCallbacks``) takes the work deferred to
  the commit of a SQLAlchemy Session (``tidings.sqlalchemy.on_commit()``) during a ``with``
  block, lists it, and can run it on exit, emulating the commit. It needs
  ``tidings[sqlalchemy]``, imported only when called.
* The pytest plugin (loaded through the ``pytest11`` entry point) adds the fixtures
  ``signal_capture``, ``mute_signals`` and ``capture_on_commit_callbacks``. It imports pytest
  only when pytest configures it, so ``import tidings.testing`` stays cheap outside pytest.

Threads: these helpers are for tests. :func:`muted` and :func:`capture` rewrite a signal's
connection list with a read-then-assign that other threads connecting or disconnecting on the
same signal at the same moment can interleave with; sends from any thread are recorded safely.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from tidings._capture import Call, Capture, capture
from tidings._dispatch import Signal
from tidings._muting import Muted, muted

__all__ = ["Call", "Capture", "Muted", "capture", "capture_on_commit", "muted"]

_PLUGIN_NAME = "tidings-fixtures"


# -- on-commit work ---------------------------------------------------------------------------


@contextlib.contextmanager
def capture_on_commit(
    session: Any = None, *, execute: bool = False
) -> Iterator[list[Callable[[], Any]]]:
    """Take the work deferred to a Session's commit during the block (``captureOnCommitCallbacks``).

    Work registered while a transaction is open, for ``session`` (any Session when None), goes
    to the capture instead of that transaction: it does not run at the commit. On exit the
    yielded list holds, in registration order, the callables still pending (work of a
    transaction or savepoint rolled back inside the block is left out): for
    ``tidings.sqlalchemy.on_commit(func)`` the ``func`` itself, for a receiver connected with
    ``delivery="on_commit"`` a callable that calls it with its send's arguments. Work that runs
    at once (no transaction open) is not captured.

    Args:
        session: A ``Session`` or ``AsyncSession``; None captures the work of every Session.
        execute: Run the captured work on exit (unless the block raised), as a commit would:
            in order, each failure logged and the others still run. Work those callables
            defer while running is captured and run too. Async callables need an
            AsyncSession's commit or a thread with no running event loop: from async code,
            await the listed callables yourself (executing them here logs an error).

    Yields:
        The list, filled on exit.

    Raises:
        ImportError: SQLAlchemy is not installed.
    """
    try:
        from tidings.sqlalchemy import _transactions
    except ImportError as exc:
        raise ImportError(
            'capture_on_commit() needs SQLAlchemy: pip install "tidings[sqlalchemy]"'
        ) from exc
    target = None if session is None else _transactions.sync_session(session)
    callbacks: list[Callable[[], Any]] = []
    with _transactions.Capturing(target) as capturing:
        try:
            yield callbacks
        finally:
            callbacks.extend(work.func for work in capturing.pending())
        # Reached only when the block did not raise.
        start = 0
        while execute and start < len(capturing.work):
            batch = [work for work in capturing.work[start:] if not work.dropped]
            if start:
                callbacks.extend(work.func for work in batch)
            start = len(capturing.work)
            _transactions.run_robustly(batch, "capture_on_commit()")


# -- pytest plugin ----------------------------------------------------------------------------


def pytest_configure(config: Any) -> None:
    """Register the fixtures ``signal_capture`` and ``mute_signals`` (a pytest hook).

    pytest calls this only once it runs, so pytest is imported here and not at module import.
    """
    manager = config.pluginmanager
    if not manager.has_plugin(_PLUGIN_NAME):
        manager.register(_fixtures(), _PLUGIN_NAME)


@functools.cache
def _fixture_class() -> type:
    import pytest

    class TidingsFixtures:
        """The fixtures of tidings' pytest plugin."""

        @pytest.fixture
        def signal_capture(self) -> Iterator[Callable[..., Capture]]:
            """Start a capture: ``signal_capture(signal, sender=None)``; stops at teardown."""
            with contextlib.ExitStack() as stack:

                def start(signal: Signal, *, sender: Any = None) -> Capture:
                    return stack.enter_context(capture(signal, sender=sender))

                yield start

        @pytest.fixture
        def capture_on_commit_callbacks(self) -> Callable[..., Any]:
            """Give :func:`capture_on_commit` itself, to use as a context manager in the test."""
            return capture_on_commit

        @pytest.fixture
        def mute_signals(self) -> Iterator[Callable[..., Muted]]:
            """Mute: ``mute_signals(*signals, receivers=None)``; restored at teardown."""
            with contextlib.ExitStack() as stack:

                def mute(
                    *signals: Signal, receivers: Iterable[Callable[..., Any]] | None = None
                ) -> Muted:
                    return stack.enter_context(muted(*signals, receivers=receivers))

                yield mute

    return TidingsFixtures


def _fixtures() -> object:
    return _fixture_class()()
