"""The exceptions tidings raises itself.

Every error has :class:`TidingsError` as a base. Errors that correspond to a built-in category
also derive from that built-in (``TypeError``, ``ValueError``, ``RuntimeError``), so code written
for django.dispatch, which raises the built-ins, keeps catching them.
"""

from __future__ import annotations

__all__ = [
    "AppKindError",
    "AsyncReceiversInEventLoopError",
    "InvalidReceiverError",
    "InvalidSenderError",
    "ReceiverSignatureError",
    "TidingsError",
]


class TidingsError(Exception):
    """Base class of every exception raised by tidings itself."""


class InvalidReceiverError(TidingsError, TypeError):
    """A receiver is not callable, or cannot be weakly referenced although ``weak=True``."""


class InvalidSenderError(TidingsError, ValueError):
    """A sender given to ``connect`` can never be the sender of a send, as written.

    A string sender on a plain :class:`~tidings.Signal` is almost always a lazy model
    reference (``"app_label.ModelName"``) meant for a ``ModelSignal``; signals whose senders
    really are strings say so with ``Signal(string_senders=True)``.
    """


class ReceiverSignatureError(TidingsError, ValueError):
    """A receiver cannot accept the keyword arguments every send passes (``**kwargs``)."""


class AsyncReceiversInEventLoopError(TidingsError, RuntimeError):
    """``send()`` was called inside a running event loop while async receivers match.

    Awaiting them would need the loop that is busy running the caller; ``await signal.asend()``
    is the way to send from async code.
    """


class AppKindError(TidingsError, TypeError):
    """A request-signal middleware was given an application of the other kind.

    For example an ASGI application (Starlette, FastAPI) given to
    :class:`tidings.wsgi.SignalsMiddleware`, or a WSGI one (Flask) given to
    :class:`tidings.asgi.SignalsMiddleware`. The message names the middleware to use instead.
    """
