"""Recording the sends of a signal: :func:`capture`, :class:`Capture` and :class:`Call`.

Part of :mod:`tidings.testing`, which states the semantics (the recorder runs first, inline,
strongly referenced; one recorder per capture) and is where users import these from: they name
that module as theirs, so a recorder reads ``tidings.testing.Capture.record`` in a send's
responses and in logs.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from tidings._dispatch import Signal
from tidings._errors import TidingsRuntimeError, TidingsTypeError
from tidings._refs import peek

__all__ = ["Call", "Capture", "capture", "is_recorder", "public"]

_T = TypeVar("_T", bound=Callable[..., Any])

#: The public module of the test helpers, which their names and reprs give.
PUBLIC_MODULE = "tidings.testing"
_MAX_REPR = 200


def public(obj: _T) -> _T:
    """Make ``obj`` (a class or function defined here) present itself as ``tidings.testing``'s."""
    obj.__module__ = PUBLIC_MODULE
    return obj


class _Unset(enum.Enum):
    """Sentinel for an assertion argument that was not given (``None`` is a valid sender)."""

    UNSET = enum.auto()


_UNSET = _Unset.UNSET


@public
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


def is_recorder(receiver: object) -> bool:
    """Whether ``receiver`` is a capture's recorder, which ``muted()`` never mutes."""
    return getattr(receiver, "__func__", None) is Capture.record


@public
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
    @public
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


@public
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
