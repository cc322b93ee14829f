"""Identity keys and references for receivers and senders.

Receivers and senders are matched by identity, never by equality or hash, so any object can be
a sender. A bound method is identified by its object and its function, because every attribute
access creates a new bound-method object.

Each connection stores a *getter*: a zero-argument callable returning the receiver, or ``None``
once a weakly referenced receiver has died. A weak reference is its own getter; a strong one is
wrapped in ``itertools.repeat(receiver).__next__``, a C-level call as cheap as dereferencing a
weak reference, so the send loop treats both alike without a branch.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import types
import weakref
from collections.abc import Callable
from typing import Any

from tidings._errors import InvalidReceiverError, ReceiverSignatureError

Getter = Callable[[], Any]
Key = int | tuple[int, int]


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
            return weakref.WeakMethod(receiver, on_death)
        return weakref.ref(receiver, on_death)
    except TypeError:
        raise InvalidReceiverError(
            f"Cannot connect {describe(receiver)} to {signal!r} weakly: objects of type "
            f"{type(receiver).__qualname__!r} cannot be weakly referenced. "
            "Connect it with weak=False."
        ) from None


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
