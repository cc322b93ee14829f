"""Delivery modes: how a connected receiver is delivered, and the registry of their handlers.

Every connection carries a :class:`Delivery` mode. ``IMMEDIATE`` receivers are called inside
the send, as in Django. For any other mode the send hands a :class:`Deferral` to the handler
registered for that mode (by the integration that implements it, e.g. ``tidings.sqlalchemy``
for ``ON_COMMIT``), in the receiver's place in the call order:

* the handler takes it (``defer()`` returns True): the receiver's response is the mode itself
  (e.g. ``Delivery.ON_COMMIT``), the marker of a deferred receiver;
* the handler declines (returns False, e.g. no transaction is open): the receiver is called at
  once, in its place, exactly like an immediate receiver.

``ON_COMMIT`` without a registered handler means no integration that opens transactions is
loaded, so no transaction can be open: its receivers are called at once. Any other mode needs a
handler to be connected at all. A handler's exception propagates out of every send method,
``send_robust`` included: it is a programming or payload error, not the receiver's failure.

Handlers are registered with :func:`register_handler`; nothing here imports anything outside
the standard library.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from tidings._errors import DeliveryOptionsError, InvalidDeliveryError, TidingsValueError
from tidings._refs import describe

__all__ = [
    "IMMEDIATE",
    "ON_COMMIT",
    "Deferral",
    "Delivery",
    "DeliveryHandler",
    "handler_for",
    "refuse_options",
    "register_handler",
    "resolve",
]


class Delivery(str, enum.Enum):
    """How a receiver is delivered (``Signal.connect(..., delivery=...)``).

    Attributes:
        IMMEDIATE: Called inside the send (the default; Django's only behaviour).
        ON_COMMIT: Called after the current transaction commits, never if it rolls back;
            called at once when no transaction is open (see docs/transactions.md).
        DURABLE: Stored in a transactional outbox with the sender's transaction and run by a
            relay at least once, with retries and dead letters (``tidings.outbox``,
            docs/durable.md).
        QUEUE: Through the outbox onto a broker; each event runs on exactly one worker of the
            receiver's pool, at least once (``tidings.transport``).
        BROADCAST: Through the outbox onto a broker; each event runs once on every
            subscribed worker process (``tidings.transport``).
    """

    IMMEDIATE = "immediate"
    ON_COMMIT = "on_commit"
    DURABLE = "durable"
    QUEUE = "queue"
    BROADCAST = "broadcast"

    def __str__(self) -> str:
        return self.value


# The members the core compares with on every connect and per receiver of a general send. On
# Python 3.10 and 3.11, reading a member through its class (``Delivery.IMMEDIATE``) goes through
# the enum metaclass and costs about 200 ns; a module global costs a few.
IMMEDIATE = Delivery.IMMEDIATE
ON_COMMIT = Delivery.ON_COMMIT


@dataclass(frozen=True, slots=True)
class Deferral:
    """One deferred receiver of one send, as handed to a :class:`DeliveryHandler`.

    Attributes:
        signal: The signal sent.
        receiver: A getter: calling it returns the receiver, or ``None`` once a weakly
            connected receiver has died.
        name: The receiver's dotted ``module.qualname``, or the ``name=`` option it was
            connected with.
        is_async: Whether calling the receiver returns a coroutine to await.
        delivery: The mode it was connected with.
        options: The mode's options it was connected with (read-only).
        kwargs: The keyword arguments to call it with: ``signal=``, ``sender=`` and the send's
            own, exactly as the send received them.
    """

    signal: Any
    receiver: Callable[[], Callable[..., Any] | None]
    name: str
    is_async: bool
    delivery: Delivery
    options: Mapping[str, Any]
    kwargs: dict[str, Any]


class DeliveryHandler(Protocol):
    """What an integration registers for a delivery mode."""

    def validate(
        self, signal: Any, receiver: Callable[..., Any], options: Mapping[str, Any]
    ) -> None:
        """Check a connection's options at connect time; raise to refuse the connection."""

    def defer(self, deferral: Deferral) -> bool:
        """Take the receiver for later (True) or decline, so that it is called now (False)."""


_handlers: dict[Delivery, DeliveryHandler] = {}
_lock = threading.Lock()
# Modes that can be connected without a registered handler.
_BUILT_IN = (IMMEDIATE, ON_COMMIT)


def register_handler(mode: Delivery, handler: DeliveryHandler | None) -> None:
    """Register the handler of a delivery mode, replacing any previous one.

    Args:
        mode: The mode, never ``Delivery.IMMEDIATE``.
        handler: The handler, or ``None`` to remove the registered one.

    Raises:
        TidingsValueError: ``mode`` is ``IMMEDIATE`` or not a :class:`Delivery` member.
    """
    if not isinstance(mode, Delivery) or mode is IMMEDIATE:
        raise TidingsValueError(f"Cannot register a delivery handler for {mode!r}")
    with _lock:
        if handler is None:
            _handlers.pop(mode, None)
        else:
            _handlers[mode] = handler


def handler_for(mode: Delivery) -> DeliveryHandler | None:
    """The handler registered for ``mode``, or ``None``."""
    return _handlers.get(mode)


def _valid() -> list[Delivery]:
    return [m for m in Delivery if m in _BUILT_IN or m in _handlers]


def resolve(
    delivery: object, options: Mapping[str, Any], signal: Any, receiver: Callable[..., Any]
) -> Delivery:
    """Validate a connection's delivery mode and options; return the mode as a member.

    Raises:
        InvalidDeliveryError: ``delivery`` is not a mode, or its handler is not registered.
        DeliveryOptionsError: options were given that the mode does not take.
    """
    if delivery is IMMEDIATE and not options:
        return IMMEDIATE  # the default, checked on every connect: keep it cheap
    try:
        mode = Delivery(delivery)
    except ValueError:
        mode = None
    if mode is None or (mode not in _BUILT_IN and mode not in _handlers):
        valid = ", ".join(repr(m.value) for m in _valid())
        why = "unknown delivery" if mode is None else "no handler is registered for delivery"
        raise InvalidDeliveryError(
            f"Cannot connect {describe(receiver)} to {signal!r}: {why} {delivery!r}; "
            f"valid values: {valid}."
        )
    handler = None if mode is IMMEDIATE else _handlers.get(mode)
    if handler is not None:
        handler.validate(signal, receiver, options)
    else:
        refuse_options(mode, signal, receiver, options)
    return mode


def refuse_options(
    mode: Delivery, signal: Any, receiver: Callable[..., Any], options: Mapping[str, Any]
) -> None:
    """Raise unless ``options`` is empty: for modes (and handlers) that take no options.

    Raises:
        DeliveryOptionsError: naming the receiver, the signal, the mode and the options.
    """
    if options:
        names = ", ".join(sorted(options))
        raise DeliveryOptionsError(
            f"Cannot connect {describe(receiver)} to {signal!r}: delivery {mode.value!r} takes "
            f"no options, got: {names}."
        )
