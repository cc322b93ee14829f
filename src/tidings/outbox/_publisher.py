"""The relay's action for queue and broadcast rows: publish each to the outbox's transport.

A row is done when ``publish()`` returned (the broker accepted the entry). A transport error
postpones the row (its attempt not counted) with a backoff, and the rest of the batch with it.
"""

from __future__ import annotations

import logging
import time

from tidings._errors import TransportError
from tidings.outbox._records import Claimed, Postpone
from tidings.outbox._remote import seal, topic_name
from tidings.transport._base import Transport

__all__ = ["Publisher"]

logger = logging.getLogger("tidings.outbox.publish")

#: The longest a relay waits before it tries a transport that failed again.
MAX_BACKOFF = 30.0


class Publisher:
    """The relay's action for queue and broadcast rows: publish, done when accepted.

    Args:
        transport: Where to publish.
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.failures = 0
        self._down_until = 0.0

    def __repr__(self) -> str:
        return f"<Publisher to {self.transport!r}>"

    def __call__(self, row: Claimed) -> None:
        """Publish ``row``'s entry; return once the transport accepted it.

        Raises:
            Postpone: The transport failed (or failed a moment ago): try the row later.
        """
        now = time.monotonic()
        if now < self._down_until:
            raise Postpone(self._down_until - now, "the transport failed a moment ago")
        body = seal(row.format, row.signal, row.receiver, row.sent_at, row.payload)
        try:
            self.transport.publish(topic_name(row.receiver), str(row.event_id), body)
        except TransportError as exc:
            self.failures += 1
            delay = min(MAX_BACKOFF, 0.5 * 2 ** (self.failures - 1))
            self._down_until = time.monotonic() + delay
            logger.warning(
                "cannot publish to %r (%s); the rows stay in the outbox, next try in %.1f s",
                self.transport,
                exc,
                delay,
            )
            raise Postpone(delay, str(exc)) from exc
        self.failures = 0
