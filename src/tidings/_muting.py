"""Silencing signals: :func:`muted` and :class:`Muted`.

Part of :mod:`tidings.testing`, which states the semantics (removed connections restored in
their places, connections made while muted kept after them, captures never muted) and is where
users import these from.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, cast

from tidings._capture import is_recorder, public
from tidings._connections import Connection
from tidings._dispatch import Signal
from tidings._errors import TidingsTypeError, TidingsValueError
from tidings._refs import describe, id_of, peek

__all__ = ["Muted", "muted"]

_F = TypeVar("_F", bound=Callable[..., Any])

# Test methods are found by this prefix, as unittest's loader and pytest do by default.
_TEST_PREFIX = "test"


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


@public
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
                if is_recorder(target):
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


@public
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
