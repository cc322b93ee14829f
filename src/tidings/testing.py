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
import enum
import functools
import inspect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, cast

from tidings._connections import Connection
from tidings._dispatch import Signal
from tidings._errors import TidingsRuntimeError, TidingsTypeError, TidingsValueError
from tidings._refs import describe, id_of, peek

__all__ = ["Call", "Capture", "Muted", "capture", "capture_on_commit", "muted"]

_F = TypeVar("_F", bound=Callable[..., Any])

# Test methods are found by this prefix, as unittest's loader and pytest do by default.
_TEST_PREFIX = "test"
_PLUGIN_NAME = "tidings-fixtures"
_MAX_REPR = 200


class _Unset(enum.Enum):
    """Sentinel for an assertion argument that was not given (``None`` is a valid sender)."""

    UNSET = enum.auto()


_UNSET = _Unset.UNSET


@dataclass(frozen=True, slots=True)
class Call:
    """One recorded send.

    Attributes:
        sender: The ``sender`` the signal was sent with.
        kwargs: The keyword arguments of the send (without ``signal`` and ``sender``).
    """

    sender: Any
    kwargs: dict[str, Any]


def _short_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the assertion being reported
        text = f"<{type(value).__qualname__} object with a failing repr>"
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."


def _format_arguments(sender: Any, kwargs: dict[str, Any]) -> str:
    parts = [] if sender is _UNSET else [f"sender={_short_repr(sender)}"]
    parts.extend(f"{name}={_short_repr(value)}" for name, value in kwargs.items())
    return ", ".join(parts) if parts else "any arguments"


def _matches(call: Call, sender: Any, kwargs: dict[str, Any]) -> bool:
    # The expected value goes on the left so that helpers such as unittest.mock.ANY compare
    # with their own __eq__; identity first so objects without a useful __eq__ still match.
    if sender is not _UNSET and not (sender is call.sender or sender == call.sender):
        return False
    for name, expected in kwargs.items():
        if name not in call.kwargs:
            return False
        actual = call.kwargs[name]
        if not (expected is actual or expected == actual):
            return False
    return True


def _is_recorder(receiver: object) -> bool:
    """Whether ``receiver`` is a capture's recorder, which :class:`Muted` never mutes."""
    return getattr(receiver, "__func__", None) is Capture.record


class Capture:
    """Records the sends of a signal while active; created by :func:`capture`.

    Attributes:
        signal: The signal being recorded.
        sender: Only sends from this object (by identity) are recorded; ``None`` for all.
        calls: The recorded sends, in the order they were made.
    """

    def __init__(self, signal: Signal, *, sender: Any = None) -> None:
        if not isinstance(signal, Signal):
            raise TidingsTypeError(f"capture() expects a Signal, not {signal!r}")
        self.signal = signal
        self.sender = sender
        self.calls: list[Call] = []
        # One bound method for the whole capture: connect and disconnect must see the same.
        self._recorder = self.record
        self._started = False
        self._active = False

    def __repr__(self) -> str:
        return f"<Capture of {self._describe()}>"

    # ``self`` is positional-only so that a send may pass any keyword, even ``self``.
    def record(self, /, signal: Signal, sender: Any, **kwargs: Any) -> None:
        """The receiver the capture connects: append the send to :attr:`calls`.

        It appears, first, as ``(capture.record, None)`` in the responses of every send it
        records.

        Args:
            signal: The signal sent.
            sender: The sender of the send.
            **kwargs: The send's other keyword arguments.
        """
        self.calls.append(Call(sender, kwargs))

    @property
    def active(self) -> bool:
        """Whether the capture is recording (inside its ``with`` block)."""
        return self._active

    @property
    def count(self) -> int:
        """The number of recorded sends."""
        return len(self.calls)

    def __enter__(self) -> Capture:
        if self._started:
            raise TidingsRuntimeError(
                f"{self!r} was already used; create a new capture() for each block"
            )
        self._started = True
        # Signal's own connect without its sender check: a ModelSignal would treat a string
        # sender as a lazy model reference, and a plain Signal refuses one, while a capture
        # matches the sender object it was given.
        Signal._connect(self.signal, self._recorder, self.sender, False, None, inline=True)
        connections = self.signal.receivers
        mine = [c for c in connections if peek(c.receiver) is self._recorder]
        if mine and connections[0] is not mine[0]:
            # First in line: a send is recorded before any receiver can raise, and nested
            # sends are recorded in the order they were made.
            self.signal.receivers = [mine[0], *(c for c in connections if c is not mine[0])]
        self._active = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._active = False
        Signal.disconnect(self.signal, self._recorder, self.sender)

    # -- assertions -------------------------------------------------------------------------

    def assert_sent_once(self) -> None:
        """Assert that the signal was sent exactly once.

        Raises:
            AssertionError: It was sent another number of times; the message lists the sends.
        """
        if self.count != 1:
            self._fail(f"Expected {self._describe()} to be sent once")

    def assert_not_sent(self) -> None:
        """Assert that the signal was never sent.

        Raises:
            AssertionError: It was sent; the message lists the sends.
        """
        if self.calls:
            self._fail(f"Expected {self._describe()} not to be sent")

    def assert_sent_with(self, *, sender: Any = _UNSET, **kwargs: Any) -> None:
        """Assert that at least one send matches ``sender`` and ``kwargs``.

        A send matches when its sender equals ``sender`` (when given) and it was sent with each
        given keyword argument, with an equal value; other keyword arguments of the send are
        ignored. Values compare by identity first, then with ``==`` (so
        :data:`unittest.mock.ANY` works).

        Raises:
            AssertionError: No send matches; the message lists the sends.
        """
        if not any(_matches(call, sender, kwargs) for call in self.calls):
            self._fail(
                f"Expected {self._describe()} to be sent with {_format_arguments(sender, kwargs)}"
            )

    def assert_sent_once_with(self, *, sender: Any = _UNSET, **kwargs: Any) -> None:
        """Assert that the signal was sent exactly once, and that this send matches.

        Matching is as for :meth:`assert_sent_with`.

        Raises:
            AssertionError: The signal was not sent exactly once, or the send does not match.
        """
        if self.count != 1 or not _matches(self.calls[0], sender, kwargs):
            self._fail(
                f"Expected {self._describe()} to be sent once with "
                f"{_format_arguments(sender, kwargs)}"
            )

    def _describe(self) -> str:
        if self.sender is None:
            return f"{self.signal!r}"
        return f"{self.signal!r} from sender {_short_repr(self.sender)}"

    def _fail(self, expectation: str) -> None:
        if not self.calls:
            raise AssertionError(f"{expectation}, but it was never sent.")
        times = "once" if self.count == 1 else f"{self.count} times"
        lines = [f"{expectation}, but it was sent {times}:"]
        lines.extend(
            f"  {number}. {_format_arguments(call.sender, call.kwargs)}"
            for number, call in enumerate(self.calls, 1)
        )
        raise AssertionError("\n".join(lines))


def capture(signal: Signal, *, sender: Any = None) -> Capture:
    """Record the sends of ``signal`` in a ``with`` block.

    Args:
        signal: The signal to record.
        sender: Record only sends from this object, matched by identity as a receiver
            connected with ``sender=`` would be (``None``, the default: every send). A string
            is a plain sender, never a lazy model reference.

    Returns:
        An inactive :class:`Capture`; ``with`` starts it and returns it. It stops at the end of
        the block, even when the block raises, and keeps its records for assertions.

    Raises:
        TypeError: ``signal`` is not a :class:`~tidings.Signal`.

    Example::

        with capture(post_save, sender=User) as saved:
            create_user("ada")
        saved.assert_sent_once_with(created=True)
    """
    return Capture(signal, sender=sender)


@dataclass(slots=True)
class _Saved:
    """What one :class:`Muted` entry took out of one signal."""

    signal: Signal
    before: list[Connection]
    removed: set[int]  # ids of removed connections; ``before`` keeps them alive, ids stable


def _restore(saved: _Saved) -> None:
    """Put the removed connections back in place; keep what was connected meanwhile."""
    current = saved.signal.receivers
    now = {id(c) for c in current}
    restored = [c for c in saved.before if id(c) in saved.removed or id(c) in now]
    # A dead connection's key may be reused by a new object: only live keys take precedence.
    keys = [c.key for c in restored if c.alive()]
    known = {id(c) for c in saved.before}
    for connection in current:
        if id(connection) not in known and connection.key not in keys:
            restored.append(connection)
            keys.append(connection.key)
    saved.signal.receivers = restored


class Muted:
    """Silences signals; a context manager and a decorator, created by :func:`muted`.

    Attributes:
        signals: The muted signals.
        receivers: The receivers muted, or ``None`` for all of them.
    """

    def __init__(
        self, *signals: Signal, receivers: Iterable[Callable[..., Any]] | None = None
    ) -> None:
        if not signals:
            raise TidingsTypeError("muted() needs at least one signal")
        for signal in signals:
            if not isinstance(signal, Signal):
                raise TidingsTypeError(f"muted() expects Signals, not {signal!r}")
        self.signals: tuple[Signal, ...] = tuple(dict.fromkeys(signals))
        self.receivers: tuple[Callable[..., Any], ...] | None = (
            None if receivers is None else tuple(receivers)
        )
        self._entries: list[list[_Saved]] = []

    def __repr__(self) -> str:
        which = (
            "all receivers"
            if self.receivers is None
            else ", ".join(describe(r) for r in self.receivers)
        )
        return f"<Muted {which} of {', '.join(map(repr, self.signals))}>"

    def __enter__(self) -> Muted:
        wanted = None if self.receivers is None else [id_of(r) for r in self.receivers]
        found: list[object] = []
        entry: list[_Saved] = []
        for signal in self.signals:
            before = signal.receivers
            removed = set()
            for connection in before:
                target = peek(connection.receiver)
                if _is_recorder(target):
                    continue
                if wanted is None:
                    removed.add(id(connection))
                elif target is not None and (key := id_of(target)) in wanted:
                    removed.add(id(connection))
                    found.append(key)
            entry.append(_Saved(signal, before, removed))
        if self.receivers is not None:
            missing = [r for r in self.receivers if id_of(r) not in found]
            if missing:
                names = ", ".join(describe(r) for r in missing)
                raise TidingsValueError(
                    f"Cannot mute {names}: not connected to {', '.join(map(repr, self.signals))}"
                )
        for saved in entry:
            saved.signal.receivers = [c for c in saved.before if id(c) not in saved.removed]
        self._entries.append(entry)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for saved in self._entries.pop():
            _restore(saved)

    def __call__(self, obj: _F) -> _F:
        """Mute around each call of a function or async function, or each test of a class.

        Args:
            obj: A function, an async function, a generator function (muted while it runs,
                for pytest fixtures), or a class, whose methods named ``test*`` (also inherited
                ones, static and class methods) are decorated in place.

        Returns:
            The wrapper, or the class itself.
        """
        if isinstance(obj, type):
            self._decorate_class(obj)
            return obj
        func: Callable[..., Any] = obj
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._fresh():
                    return await func(*args, **kwargs)

            return cast(_F, async_wrapper)
        if inspect.isgeneratorfunction(func):

            @functools.wraps(func)
            def generator_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._fresh():
                    return (yield from func(*args, **kwargs))

            return cast(_F, generator_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return func(*args, **kwargs)

        return cast(_F, wrapper)

    def _fresh(self) -> Muted:
        # One object per call, so concurrent or recursive calls never share saved state.
        return Muted(*self.signals, receivers=self.receivers)

    def _decorate_class(self, cls: type) -> None:
        for name in dir(cls):
            if not name.startswith(_TEST_PREFIX):
                continue
            raw = inspect.getattr_static(cls, name)
            if isinstance(raw, staticmethod):
                setattr(cls, name, staticmethod(self(raw.__func__)))
            elif isinstance(raw, classmethod):
                setattr(cls, name, classmethod(self(raw.__func__)))
            elif inspect.isfunction(raw):
                setattr(cls, name, self(raw))


def muted(*signals: Signal, receivers: Iterable[Callable[..., Any]] | None = None) -> Muted:
    """Silence ``signals``: remove their receivers, then restore them in their places.

    Args:
        *signals: The signals to silence.
        receivers: Mute only these receivers (each on every signal and sender it is connected
            to); ``None``, the default, mutes all. Receivers are matched by identity.

    Returns:
        A :class:`Muted`, usable as ``with muted(...):`` (re-entrant and nestable) and as a
        decorator of functions, async functions and test classes.

    Raises:
        TypeError: No signal was given, or one is not a :class:`~tidings.Signal`.
        ValueError: On entry, when one of ``receivers`` is connected to none of ``signals``.

    Example::

        @muted(post_save)
        def test_import_users(): ...

        with muted(post_save, receivers=[send_welcome_mail]):
            create_user("ada")
    """
    return Muted(*signals, receivers=receivers)


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
