"""Identity keys and references for receivers and senders.

Receivers and senders are matched by identity, never by equality or hash, so any object can be
a sender. A bound method is identified by its object and its function, because every attribute
access creates a new bound-method object.

Each connection stores a *getter*: a zero-argument callable returning the receiver, or ``None``
once a weakly referenced receiver has died. A weak reference is its own getter; a strong one is
wrapped in ``itertools.repeat(receiver).__next__``, a C-level call as cheap as dereferencing a
weak reference, so the send loop treats both alike without a branch.

Receivers that are usually temporaries (lambdas, functions defined inside another function,
bound methods, ``functools.partial`` objects) are watched: their weak reference is a subclass
that remembers where it was connected and, on its first dereference, turns itself into a
subclass that dereferences like a plain weak reference (its class is reassigned, so the send
path pays nothing after the first send). A watched reference whose receiver dies while it is
still *unheard* is one a send never reached: the signal reports it as a
:class:`~tidings.UncalledReceiverWarning`. Introspection (``has_listeners``, ``live_receivers``,
purging) reads references through :func:`peek`, which never counts as a send.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import sys
import types
import weakref
from collections.abc import Callable
from typing import Any

from tidings._errors import InvalidReceiverError, ReceiverSignatureError

Getter = Callable[[], Any]
Key = int | tuple[int, int]
# Where a receiver was connected: (file name, line number, module name).
Site = tuple[str, int, str]


def id_of(obj: object) -> Key:
    """Return the identity key of ``obj``: ``(id(self), id(func))`` for bound methods.

    An object whose attribute lookup raises (a ``__getattr__`` raising something other than
    ``AttributeError``) is no bound method: its key is its ``id()``.
    """
    try:
        func = getattr(obj, "__func__", None)
        if func is not None and hasattr(obj, "__self__"):
            return (id(obj.__self__), id(func))
    except Exception:
        pass
    return id(obj)


# asgiref's markcoroutinefunction sets this marker on Python < 3.12.
_ASGIREF_MARKER = getattr(asyncio.coroutines, "_is_coroutine", object())


def is_async_callable(func: object) -> bool:
    """Whether calling ``func`` returns a coroutine, decided once at connect time."""
    if type(func) is types.FunctionType and not func.__dict__:
        # No marker and nothing wrapped: the code object's flags are the whole answer.
        return bool(func.__code__.co_flags & inspect.CO_COROUTINE)
    return inspect.iscoroutinefunction(func) or (
        getattr(func, "_is_coroutine", None) is _ASGIREF_MARKER
    )


def is_bound_method(obj: object) -> bool:
    """Whether ``obj`` has both ``__self__`` and ``__func__`` (a bound method or classmethod)."""
    try:
        return hasattr(obj, "__self__") and hasattr(obj, "__func__")
    except Exception:
        return False


def strong_getter(obj: object) -> Getter:
    """Return a getter that always yields ``obj``."""
    return itertools.repeat(obj).__next__


def receiver_getter(
    receiver: Callable[..., Any], weak: bool, on_death: Callable[[Any], None], signal: object
) -> Getter:
    """Return the getter a connection stores for ``receiver``.

    Raises:
        InvalidReceiverError: ``weak`` is true and ``receiver`` cannot be weakly referenced.
    """
    if not weak:
        return strong_getter(receiver)
    try:
        if is_bound_method(receiver):
            method = _UnheardMethod(receiver, on_death)
            method.what, method.where = describe(receiver), connect_site()
            return method
        if _is_temporary(receiver):
            ref = _UnheardRef(receiver, on_death)
            ref.what, ref.where = describe(receiver), connect_site()
            return ref
        return weakref.ref(receiver, on_death)
    except TypeError:
        raise InvalidReceiverError(
            f"Cannot connect {describe(receiver)} to {signal!r} weakly: objects of type "
            f"{type(receiver).__qualname__!r} cannot be weakly referenced. "
            "Connect it with weak=False."
        ) from None


def _is_temporary(receiver: object) -> bool:
    """Whether ``receiver`` is a function or partial that usually dies with its caller.

    Lambdas and nested functions (``<locals>`` in the qualified name) and partials; bound
    methods are watched by :func:`receiver_getter` directly.
    """
    kind = type(receiver)
    if kind is types.FunctionType:
        qualname = receiver.__qualname__  # type: ignore[attr-defined]
        return "<lambda>" in qualname or "<locals>" in qualname
    return kind is functools.partial


class _HeardRef(weakref.ref):  # type: ignore[type-arg]
    """A watched weak reference that a send has dereferenced: a plain one from now on."""

    __slots__ = ("what", "where")
    what: str
    where: Site


class _UnheardRef(weakref.ref):  # type: ignore[type-arg]
    """A watched weak reference no send has dereferenced yet; see the module docstring."""

    __slots__ = ("what", "where")
    what: str
    where: Site

    def __call__(self) -> Any:
        target = weakref.ref.__call__(self)
        # Same slots, so the reassignment is allowed; racing threads assign the same class.
        self.__class__ = _HeardRef  # type: ignore[assignment]
        return target


class _HeardMethod(weakref.WeakMethod):  # type: ignore[type-arg]
    """A watched weak bound method that a send has dereferenced."""

    __slots__ = ("what", "where")
    what: str
    where: Site


class _UnheardMethod(weakref.WeakMethod):  # type: ignore[type-arg]
    """A watched weak bound method no send has dereferenced yet."""

    __slots__ = ("what", "where")
    what: str
    where: Site

    def __call__(self) -> Any:
        target = weakref.WeakMethod.__call__(self)
        self.__class__ = _HeardMethod  # type: ignore[assignment]
        return target


_PEEKS: dict[type, Callable[[Any], Any]] = {
    _UnheardRef: weakref.ref.__call__,
    _UnheardMethod: weakref.WeakMethod.__call__,
}
UNHEARD_TYPES = frozenset(_PEEKS)


def peek(getter: Getter) -> Any:
    """Dereference ``getter`` without counting it as a send's (see the module docstring)."""
    read = _PEEKS.get(type(getter))
    return getter() if read is None else read(getter)


def unheard_death(getter: Getter) -> tuple[str, Site] | None:
    """``(description, connect site)`` of a watched receiver that died unheard, else None."""
    if type(getter) not in UNHEARD_TYPES or peek(getter) is not None:
        return None
    watched: Any = getter
    return watched.what, watched.where


def inherit_watch(origin: Getter, getter: Getter) -> None:
    """Give ``getter`` the connect site and the heard state of ``origin`` (both watched).

    Used when a connection is rebuilt for the same receiver (restoring ``receivers``, a lazy
    sender resolved later), so that the site stays the user's line and a receiver already
    reached by a send is not reported.
    """
    source: Any = origin
    target: Any = getter
    if not hasattr(source, "where") or not hasattr(target, "where"):
        return
    target.what, target.where = source.what, source.where
    if type(source) not in UNHEARD_TYPES:
        mark_heard(target)


def mark_heard(getter: Getter) -> None:
    """Stop ``getter`` from counting as unheard, without dereferencing it."""
    if type(getter) is _UnheardRef:
        getter.__class__ = _HeardRef  # type: ignore[assignment]
    elif type(getter) is _UnheardMethod:
        getter.__class__ = _HeardMethod  # type: ignore[assignment]


# Frames of these modules are skipped when finding where a receiver was connected.
_SKIPPED_MODULES = frozenset({"contextlib", "functools"})


def connect_site() -> Site:
    """The first frame of the caller's stack outside tidings (and contextlib, functools)."""
    frame = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not isinstance(module, str) or not (
            module == "tidings" or module.startswith("tidings.") or module in _SKIPPED_MODULES
        ):
            break
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return ("<unknown>", 0, "<unknown>")
    module = frame.f_globals.get("__name__", "")
    return (frame.f_code.co_filename, frame.f_lineno, module if isinstance(module, str) else "")


def sender_refs(sender: Any, on_death: Callable[[Any], None]) -> tuple[Getter, Getter]:
    """Return ``(identity, sender)`` getters for a connection's sender.

    ``identity`` yields the object whose ``id()`` is the sender's key (the object behind a bound
    method, else the sender itself), ``sender`` yields the sender as connected (a bound method
    is bound again, since the method object itself is a temporary). Both yield ``None`` once the
    sender has died; ``on_death`` is called then. Senders that cannot be weakly referenced
    (numbers, strings, tuples, plain ``object()``) are held strongly, so their ``id()`` can
    never be reused while connected.
    """
    target: object = sender.__self__ if is_bound_method(sender) else sender
    try:
        ref = weakref.ref(target, on_death)
    except TypeError:
        return strong_getter(target), strong_getter(sender)
    if target is sender:
        return ref, ref
    func = sender.__func__

    def rebind() -> object:
        owner = ref()
        return None if owner is None else func.__get__(owner)

    return ref, rebind


def identity_of(sender: object) -> object:
    """The object whose ``id()`` keys ``sender``: see :func:`id_of`."""
    func = getattr(sender, "__func__", None)
    if func is not None and hasattr(sender, "__self__"):
        return sender.__self__
    return sender


def check_receiver(receiver: object, signal: object) -> None:
    """Reject a receiver that can never be called the way a send calls it.

    Raises:
        InvalidReceiverError: ``receiver`` is not callable, or reading its signature raised
            (the error is chained as the cause).
        ReceiverSignatureError: ``receiver`` has no ``**kwargs`` parameter.
    """
    if not callable(receiver):
        raise InvalidReceiverError(
            f"Cannot connect {describe(receiver)} to {signal!r}. Signal receivers must be callable."
        )
    if _plain_accepts_kwargs(receiver):
        return
    try:
        # Read first on its own: inspect.signature() lets an error raised by a __signature__
        # attribute escape as it is, and a TypeError from it must not pass for "no signature".
        getattr(receiver, "__signature__", None)
    except Exception as error:
        raise _unreadable(receiver, signal, error) from error
    try:
        parameters = inspect.signature(receiver).parameters.values()
    except (TypeError, ValueError):
        # Some builtins have no introspectable signature; they are given the benefit of doubt.
        return
    except Exception as error:
        # A raising __signature__, or an __eq__ that inspect trips over: the receiver's own
        # error, but connect must say which receiver it was.
        raise _unreadable(receiver, signal, error) from error
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        raise ReceiverSignatureError(
            f"Cannot connect {describe(receiver)} to {signal!r}. Signal receivers must accept "
            "keyword arguments (**kwargs)."
        )


def _plain_accepts_kwargs(receiver: object) -> bool:
    """Whether ``receiver`` is a plain function (or a method of one) that takes ``**kwargs``.

    For such functions the code object's flags say what :func:`inspect.signature` would,
    at a fraction of the cost (per-object connections call ``connect`` very often). Anything
    that could make the signature differ (``__signature__``, ``__wrapped__``) takes the full
    path.
    """
    func = (
        getattr(receiver, "__func__", receiver) if type(receiver) is types.MethodType else receiver
    )
    if type(func) is not types.FunctionType:
        return False
    namespace = func.__dict__
    if "__signature__" in namespace or "__wrapped__" in namespace:
        return False
    return bool(func.__code__.co_flags & inspect.CO_VARKEYWORDS)


def _unreadable(receiver: object, signal: object, error: Exception) -> InvalidReceiverError:
    return InvalidReceiverError(
        f"Cannot connect {describe(receiver)} to {signal!r}: reading its signature raised "
        f"{type(error).__name__}: {safe_str(error)}"
    )


def describe(receiver: object) -> str:
    """A readable name for a receiver: its qualified name where it has one, else its repr.

    Never raises: an object whose attribute lookup or ``repr()`` fails is described by its
    type and address.
    """
    try:
        qualname = getattr(receiver, "__qualname__", None)
        if isinstance(qualname, str):
            module = getattr(receiver, "__module__", None)
            return f"{module}.{qualname}" if isinstance(module, str) else qualname
    except Exception:
        pass
    return safe_repr(receiver)


def safe_repr(obj: object) -> str:
    """``repr(obj)``, or ``<TypeName object at 0x...>`` when ``repr()`` itself raises."""
    try:
        return repr(obj)
    except Exception:
        return f"<{type(obj).__qualname__} object at {id(obj):#x} (repr() failed)>"


def safe_str(error: BaseException) -> str:
    """``str(error)``, or a placeholder naming its type when that raises."""
    try:
        return str(error)
    except Exception:
        return f"<unprintable {type(error).__qualname__}>"
