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

import inspect
import itertools
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


def sender_getter(sender: Any, on_death: Callable[[Any], None]) -> Getter:
    """Return a getter for a sender that notices when the sender dies.

    The object behind a bound method is what is referenced (the method object itself is a
    temporary). Senders that cannot be weakly referenced (numbers, strings, tuples, plain
    ``object()``) are held strongly, so their ``id()`` can never be reused while connected.
    """
    target: object = sender.__self__ if is_bound_method(sender) else sender
    try:
        ref = weakref.ref(target, on_death)
    except TypeError:
        return strong_getter(sender)
    if target is sender:
        return ref
    func = sender.__func__

    def rebind() -> object:
        owner = ref()
        return None if owner is None else func.__get__(owner)

    return rebind


def check_receiver(receiver: object, signal: object) -> None:
    """Reject a receiver that can never be called the way a send calls it.

    Raises:
        InvalidReceiverError: ``receiver`` is not callable.
        ReceiverSignatureError: ``receiver`` has no ``**kwargs`` parameter.
    """
    if not callable(receiver):
        raise InvalidReceiverError(
            f"Cannot connect {describe(receiver)} to {signal!r}. Signal receivers must be callable."
        )
    try:
        parameters = inspect.signature(receiver).parameters.values()
    except (TypeError, ValueError):
        # Some builtins have no introspectable signature; they are given the benefit of doubt.
        return
    except Exception as error:
        # A raising __signature__, or an __eq__ that inspect trips over: the receiver's own
        # error, but connect must say which receiver it was.
        raise InvalidReceiverError(
            f"Cannot connect {describe(receiver)} to {signal!r}: reading its signature raised "
            f"{type(error).__name__}: {error}"
        ) from error
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        raise ReceiverSignatureError(
            f"Cannot connect {describe(receiver)} to {signal!r}. Signal receivers must accept "
            "keyword arguments (**kwargs)."
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
