"""Every exception tidings raises, in one place.

Each one derives from :class:`TidingsError`, so ``except tidings.TidingsError`` catches whatever
tidings itself raised (a receiver's own exception propagates unchanged and is not wrapped).
Each one also keeps the built-in base that code written for Django catches (``TypeError``,
``ValueError``, ``LookupError``, ``RuntimeError``); django.dispatch and django.apps raise those
built-ins. The classes are re-exported where users import them: the root package, and
:mod:`tidings.apps`, :mod:`tidings.sqlalchemy`, :mod:`tidings.outbox` for theirs.

Hierarchy::

    TidingsError(Exception)
    ├── TidingsTypeError(TypeError)            a value of the wrong type was passed
    │   ├── InvalidReceiverError               a receiver not callable / not weakly referenceable
    │   ├── DeliveryOptionsError               options a delivery mode does not take
    │   ├── AppKindError                       an ASGI app given to the WSGI middleware, or back
    │   ├── InstrumentError                    instrument() given neither a base nor a registry
    │   └── PayloadTypeError                   a durable send's argument cannot be stored
    ├── TidingsValueError(ValueError)          a value of the right type, but wrong
    │   ├── InvalidDeliveryError               an unknown delivery mode, or one not loaded
    │   ├── InvalidSenderError                 a sender that can never match a send, as written
    │   ├── UpdateFieldsError                  save(update_fields=...) naming no row's fields
    │   ├── ReceiverSignatureError             a receiver that cannot take ``**kwargs``
    │   └── NoStableNameError                  a durable receiver or signal without a stable name
    ├── TidingsLookupError(LookupError)        an app label or a model that does not exist
    ├── TidingsRuntimeError(RuntimeError)      an operation the current state does not allow
    │   ├── AsyncReceiversInEventLoopError     send() with async receivers in a running loop
    │   ├── RegistryError                      populate() re-entered, two models with one key
    │   ├── FlushLoopError                     save receivers that keep changing the session
    │   ├── AmbiguousSessionError              deferred work with two unbound Sessions open
    │   ├── RelayBusyError                     another relay holds the outbox lease
    │   ├── OutboxNotInstalledError            a durable send with no outbox installed
    │   └── TransportError                     a transport (Redis, ...) failed an operation
    │       └── NoSuchGroupError               a read or claim on a consumer group never created
    ├── ImproperlyConfigured                   an installed app, label or lazy reference is wrong
    │   └── AppLabelError(TidingsLookupError)  a mapped class that no installed app holds
    └── AppRegistryNotReady                    an AppConfig asked for models before populate()

Standard library only: the integrations' errors live here too, so this module stays the one
place, and catching them never needs the integration's dependencies.
"""

from __future__ import annotations

__all__ = [
    "AmbiguousSessionError",
    "AppKindError",
    "AppLabelError",
    "AppRegistryNotReady",
    "AsyncReceiversInEventLoopError",
    "DeliveryOptionsError",
    "FlushLoopError",
    "ImproperlyConfigured",
    "InstrumentError",
    "InvalidDeliveryError",
    "InvalidReceiverError",
    "InvalidSenderError",
    "NoStableNameError",
    "NoSuchGroupError",
    "OutboxNotInstalledError",
    "PayloadTypeError",
    "ReceiverSignatureError",
    "RegistryError",
    "RelayBusyError",
    "TidingsError",
    "TidingsLookupError",
    "TidingsRuntimeError",
    "TidingsTypeError",
    "TidingsValueError",
    "TransportError",
    "UpdateFieldsError",
]


class TidingsError(Exception):
    """Base class of every exception raised by tidings itself."""


class TidingsTypeError(TidingsError, TypeError):
    """An argument of the wrong type (a string where a list belongs, not a Signal, ...)."""


class TidingsValueError(TidingsError, ValueError):
    """An argument of the right type but a wrong value (a malformed key, a bad limit, ...)."""


class TidingsLookupError(TidingsError, LookupError):
    """Something looked up by name does not exist: an app label, a model."""


class TidingsRuntimeError(TidingsError, RuntimeError):
    """An operation the current state does not allow (a helper used twice, a loop, ...)."""


class InvalidReceiverError(TidingsTypeError):
    """A receiver is not callable, or cannot be weakly referenced although ``weak=True``."""


class InvalidSenderError(TidingsValueError):
    """A sender given to ``connect`` can never be the sender of a send, as written.

    A string sender on a plain :class:`~tidings.Signal` is almost always a lazy model
    reference (``"app_label.ModelName"``) meant for a ``ModelSignal``; signals whose senders
    really are strings say so with ``Signal(string_senders=True)``.
    """


class ReceiverSignatureError(TidingsValueError):
    """A receiver cannot accept the keyword arguments every send passes (``**kwargs``)."""


class AsyncReceiversInEventLoopError(TidingsRuntimeError):
    """``send()`` was called inside a running event loop while async receivers match.

    Awaiting them would need the loop that is busy running the caller; ``await signal.asend()``
    is the way to send from async code.

    Attributes:
        receivers_called: False when raised before any receiver ran (the usual case); True
            when a delivery handler declined an async receiver after the sync ones had run.
    """

    receivers_called: bool = False


class InvalidDeliveryError(TidingsValueError):
    """``connect(delivery=...)`` names no delivery mode, or one whose handler is not loaded."""


class DeliveryOptionsError(TidingsTypeError):
    """``connect()`` was given options that the receiver's delivery mode does not take."""


class AppKindError(TidingsTypeError):
    """A request-signal middleware was given an application of the other kind.

    For example an ASGI application (Starlette, FastAPI) given to
    :class:`tidings.wsgi.SignalsMiddleware`, or a WSGI one (Flask) given to
    :class:`tidings.asgi.SignalsMiddleware`. The message names the middleware to use instead.
    """


class InstrumentError(TidingsTypeError):
    """``tidings.sqlalchemy.instrument()`` was given the wrong kind of object.

    A mapped class (instead of its base), or neither a base class nor a registry.
    """


class UpdateFieldsError(TidingsValueError):
    """``update_fields`` of ``tidings.sqlalchemy.save()``/``asave()`` is wrong.

    It is a string, or it names something that is not a field of the model's row.
    """


class ImproperlyConfigured(TidingsError):
    """An installed-apps entry, an app label or a lazy reference is wrong."""


class AppLabelError(ImproperlyConfigured, TidingsLookupError):
    """A mapped class has no app label: no ``__app_label__`` and no installed app holds it."""


class AppRegistryNotReady(TidingsError):
    """An :class:`~tidings.apps.AppConfig` was asked for its models before joining a registry."""


class RegistryError(TidingsRuntimeError):
    """The registry was misused: ``populate()`` re-entered, or two models share a name."""


class FlushLoopError(TidingsRuntimeError):
    """Save or delete receivers kept changing the session, flush after flush."""


class AmbiguousSessionError(TidingsRuntimeError):
    """Work was deferred with two Sessions open in the calling context and none bound."""


class PayloadTypeError(TidingsTypeError):
    """A durable send's argument cannot be stored in the outbox."""


class RelayBusyError(TidingsRuntimeError):
    """Another relay holds the relay lease of this SQLite database."""


class NoStableNameError(TidingsValueError):
    """A durable receiver or its signal has no stable name a worker could find it by."""


class OutboxNotInstalledError(TidingsRuntimeError):
    """A durable send found no installed outbox to write its deliveries to."""


class TransportError(TidingsRuntimeError):
    """A transport could not carry out an operation: the broker is unreachable, or refused it.

    The message names the operation and the broker (a Redis URL without its password), so a
    relay or a worker can log it and back off; the broker's own exception is the ``__cause__``.

    Attributes:
        operation: what was attempted (``"publish"``, ``"consume"``, ...).
        target: the broker, as a URL without credentials (``"memory"`` for the in-memory one).
    """

    def __init__(self, message: str, *, operation: str = "", target: str = "") -> None:
        super().__init__(message)
        self.operation = operation
        self.target = target


class NoSuchGroupError(TransportError):
    """A consumer group was read or claimed from before ``ensure_group()`` created it.

    Also what a worker sees after a broker restart that lost its groups (Redis without
    persistence): calling ``ensure_group()`` again and going on is the remedy.
    """
