"""The asyncio face of :class:`~tidings.transport.memory.InMemoryTransport`.

Every method but ``consume()`` calls the in-memory transport directly (they only take its lock
for a moment). ``consume()`` with a ``block`` time registers a future that the next publish,
from any thread, resolves through the future's loop, so waiting never blocks the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from tidings.transport._base import (
    DeadMessage,
    GroupStatus,
    Message,
    Start,
    Transport,
    check_name,
    check_options,
)

__all__ = ["AsyncFace"]


class _Core(Transport, Protocol):
    """What the face needs of the in-memory transport besides the Transport methods."""

    target: str

    def _take_or_wait(
        self,
        topic: str,
        group: str,
        consumer: str,
        count: int,
        future: asyncio.Future[None] | None,
    ) -> list[Message]: ...

    def _forget(self, future: asyncio.Future[None]) -> None: ...


class AsyncFace:
    """The asyncio methods over an in-memory transport (``AsyncInMemoryTransport``'s base).

    Args:
        transport: The in-memory transport whose topics it serves.
    """

    def __init__(self, transport: _Core) -> None:
        self.sync = transport
        self.target = transport.target

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.sync!r}>"

    async def publish(self, topic: str, event_id: str, body: bytes) -> str:
        """See :meth:`InMemoryTransport.publish`."""
        return self.sync.publish(topic, event_id, body)

    async def ensure_group(self, topic: str, group: str, *, start: Start = "first") -> None:
        """See :meth:`InMemoryTransport.ensure_group`."""
        self.sync.ensure_group(topic, group, start=start)

    async def consume(
        self, topic: str, group: str, consumer: str, *, count: int = 10, block: float = 1.0
    ) -> list[Message]:
        """See :meth:`InMemoryTransport.consume`; waits without blocking the event loop."""
        check_name("topic", topic)
        check_name("group", group)
        check_name("consumer", consumer)
        check_options(count=count, block=block)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block
        while True:
            remaining = deadline - loop.time()
            future: asyncio.Future[None] | None = loop.create_future() if remaining > 0 else None
            taken = self.sync._take_or_wait(topic, group, consumer, count, future)
            if taken or future is None:
                return taken
            try:
                await asyncio.wait_for(future, remaining)
            except asyncio.TimeoutError:
                self.sync._forget(future)
                return self.sync._take_or_wait(topic, group, consumer, count, None)

    async def claim(
        self, topic: str, group: str, consumer: str, *, min_idle: float, count: int = 10
    ) -> list[Message]:
        """See :meth:`InMemoryTransport.claim`."""
        return self.sync.claim(topic, group, consumer, min_idle=min_idle, count=count)

    async def keep_alive(
        self, topic: str, group: str, consumer: str, ids: Sequence[str]
    ) -> list[str]:
        """See :meth:`InMemoryTransport.keep_alive`."""
        return self.sync.keep_alive(topic, group, consumer, ids)

    async def ack(self, topic: str, group: str, ids: Sequence[str]) -> int:
        """See :meth:`InMemoryTransport.ack`."""
        return self.sync.ack(topic, group, ids)

    async def done(self, group: str, event_id: str) -> bool:
        """See :meth:`InMemoryTransport.done`."""
        return self.sync.done(group, event_id)

    async def mark_done(self, group: str, event_id: str) -> bool:
        """See :meth:`InMemoryTransport.mark_done`."""
        return self.sync.mark_done(group, event_id)

    async def done_events(self, group: str, event_ids: Sequence[str]) -> set[str]:
        """See :meth:`InMemoryTransport.done_events`."""
        return self.sync.done_events(group, event_ids)

    async def complete(self, topic: str, group: str, messages: Sequence[Message]) -> int:
        """See :meth:`InMemoryTransport.complete`."""
        return self.sync.complete(topic, group, messages)

    async def dead_letter(self, topic: str, group: str, message: Message, reason: str) -> str:
        """See :meth:`InMemoryTransport.dead_letter`."""
        return self.sync.dead_letter(topic, group, message, reason)

    async def dead_letters(
        self, topic: str, group: str, *, count: int | None = None
    ) -> list[DeadMessage]:
        """See :meth:`InMemoryTransport.dead_letters`."""
        return self.sync.dead_letters(topic, group, count=count)

    async def retry(self, topic: str, group: str, ids: Sequence[str] | None = None) -> int:
        """See :meth:`InMemoryTransport.retry`."""
        return self.sync.retry(topic, group, ids)

    async def remove_group(self, topic: str, group: str) -> bool:
        """See :meth:`InMemoryTransport.remove_group`."""
        return self.sync.remove_group(topic, group)

    async def status(self, topics: Sequence[str] | None = None) -> list[GroupStatus]:
        """See :meth:`InMemoryTransport.status`."""
        return self.sync.status(topics)

    async def close(self) -> None:
        """See :meth:`InMemoryTransport.close`."""
        self.sync.close()
