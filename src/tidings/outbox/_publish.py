"""The send side of queue and broadcast delivery: their handlers and the relay's publish.

``tidings.outbox`` registers an :class:`OutboxHandler` for ``Delivery.QUEUE`` and one for
``Delivery.BROADCAST`` when it is imported, as it does for ``durable``: a send stores one row
per receiver in the sender's transaction, with the same encoding and stable-name rules. The
options are ``name``, ``max_attempts`` and ``timeout`` (the retry delay of a queue or broadcast
receiver is the consumer's claim idle time, so ``backoff`` and ``backoff_max`` are refused, and
no order is kept, so ``ordered`` is refused). A
send needs an installed outbox configured with a transport (``Outbox(..., transport=...)``);
else it raises :class:`~tidings.outbox.OutboxNotInstalledError` before anything is stored.

A relay of an outbox with a transport claims those rows too and publishes each one (the
``Publisher`` of ``tidings.outbox._publisher``); a row is done when ``publish()`` returned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tidings._delivery import Deferral, Delivery, register_handler
from tidings._errors import (
    DeliveryOptionsError,
    OutboxNotInstalledError,
    TidingsValueError,
)
from tidings._refs import describe
from tidings.outbox._handler import OutboxHandler
from tidings.outbox._outbox import installed_outbox

__all__ = ["RemoteHandler", "register_handlers"]


def _check(signal: Any, receiver: Callable[..., Any], options: Mapping[str, Any]) -> None:
    where = f"Cannot connect {describe(receiver)} to {signal!r}"
    given = sorted({"backoff", "backoff_max"} & set(options))
    if given:
        raise DeliveryOptionsError(
            f"{where}: {', '.join(given)} do not apply to queue and broadcast receivers (a "
            "failed attempt is retried once its entry was idle for the worker's claim idle "
            "time); drop them."
        )
    if "ordered" in options:
        raise DeliveryOptionsError(
            f"{where}: ordered does not apply to queue and broadcast receivers (several "
            "workers, claims and retries reorder the entries of a stream); drop it, or use "
            "delivery='durable' with ordered=."
        )
    name = options.get("name")
    if isinstance(name, str) and (any(ch.isspace() for ch in name) or "@" in name):
        raise TidingsValueError(
            f"{where}: name={name!r} names its topic and consumer group, so it cannot hold "
            "spaces or '@'"
        )


class RemoteHandler(OutboxHandler):
    """The handler of ``queue`` or ``broadcast``: an outbox row, published by the relay."""

    def __init__(self, mode: Delivery) -> None:
        super().__init__(mode, check=_check)

    def defer(self, deferral: Deferral) -> bool:
        """Store the delivery, if the installed outbox has a transport to publish it to.

        Raises:
            OutboxNotInstalledError: No outbox is installed, or it has no transport.
            PayloadTypeError: An argument cannot be stored; nothing was written.
        """
        outbox = installed_outbox()
        if outbox is not None and outbox.transport is None:
            raise OutboxNotInstalledError(
                f"{deferral.signal!r} cannot store its delivery for {self.mode.value} receiver "
                f"{deferral.name}: the installed {outbox!r} has no transport to publish it to. "
                "Create it with Outbox(engine, transport=...) (a Redis URL, or a Transport)."
            )
        return super().defer(deferral)


def register_handlers() -> None:
    """Make ``delivery="queue"`` and ``delivery="broadcast"`` connectable."""
    for mode in (Delivery.QUEUE, Delivery.BROADCAST):
        register_handler(mode, RemoteHandler(mode))
