"""The Redis Streams transport on redis-py: :class:`RedisTransport`, :class:`AsyncRedisTransport`.

A topic is a stream (``{prefix}:{topic}``), a group a consumer group, a consumer a consumer of
it: ``publish`` is ``XADD ... MAXLEN ~ maxlen``, ``ensure_group`` is ``XGROUP CREATE ...
MKSTREAM``, ``consume`` is ``XREADGROUP ... >``, ``ack`` is ``XACK``, ``claim`` is
``XAUTOCLAIM`` (with the delivery counts read by ``XPENDING`` in the same Lua script),
``keep_alive`` is ``XCLAIM ... JUSTID`` of the entries the consumer still owns, dedupe marks
are ``SET NX PX`` keys, dead letters a stream per group, ``status`` reads ``XINFO GROUPS`` and
``XINFO CONSUMERS``. It needs Redis 6.2 or newer (``XAUTOCLAIM``); nothing newer than 7.0 is
used. See docs/transport.md for the keys, persistence and trimming.

Connection errors and refused commands raise :class:`~tidings.transport.TransportError` naming
the operation and the URL (without its password); redis-py reconnects on the next call, so a
relay or a worker that backs off and calls again goes on once Redis is back.

Needs ``pip install "tidings[redis]"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

try:
    import redis
    import redis.asyncio
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise ImportError(
        'tidings.transport.redis needs redis-py: pip install "tidings[redis]"'
    ) from exc

from tidings._errors import TidingsValueError
from tidings.transport._base import (
    DEFAULT_DEDUPE_TTL,
    DEFAULT_MAXLEN,
    DeadMessage,
    GroupStatus,
    Message,
    Start,
)
from tidings.transport._redis_client import DEFAULT_URL, Base, redacted
from tidings.transport._redis_ops import Batch, Call, Op, Script, Step

__all__ = ["DEFAULT_URL", "AsyncRedisTransport", "RedisTransport", "redacted"]


class RedisTransport(Base):
    """A :class:`~tidings.transport.Transport` on Redis Streams, for threads.

    Thread-safe (redis-py's connection pool); a blocked ``consume()`` holds one connection.

    Args:
        url: ``redis://``, ``rediss://`` (TLS) or ``unix://`` URL, with user and password if
            needed; ``TIDINGS_REDIS_URL`` when omitted, else ``redis://127.0.0.1:6379/0``.
        client: A ready ``redis.Redis`` instead (then neither ``url`` nor client options); the
            caller closes it.
        prefix: Key prefix, so several applications share one Redis (default ``tidings``).
        maxlen: Entries a topic keeps; older ones are trimmed, read or not.
        approximate: ``MAXLEN ~`` (Redis trims whole nodes of 100 entries: cheap, keeps a little
            more); False trims exactly (slower).
        dedupe_ttl: Seconds a dedupe mark is kept (7 days by default).
        **client_kwargs: Passed to ``redis.Redis.from_url``: ``ssl_ca_certs``,
            ``ssl_certfile``, ``username``, ``password``, ``socket_timeout``, ... A
            ``socket_timeout`` must be longer than the longest ``consume(block=...)``.

    Raises:
        TidingsValueError: Both a client and a URL, ``decode_responses=True``, a bad option.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.Redis | None = None,
        prefix: str = "tidings",
        maxlen: int = DEFAULT_MAXLEN,
        approximate: bool = True,
        dedupe_ttl: float = DEFAULT_DEDUPE_TTL,
        **client_kwargs: Any,
    ) -> None:
        super().__init__(
            url,
            client,
            prefix=prefix,
            maxlen=maxlen,
            approximate=approximate,
            dedupe_ttl=dedupe_ttl,
            client_kwargs=client_kwargs,
            module=redis,
        )

    def _step(self, step: Step) -> Any:
        if isinstance(step, Call):
            try:
                return getattr(self.client, step.method)(*step.args, **step.kwargs)
            except redis.ResponseError as exc:
                if step.ignore and step.ignore in str(exc):
                    return None
                raise
        if isinstance(step, Batch):
            with self.client.pipeline(transaction=step.transaction) as pipe:
                for call in step.calls:
                    getattr(pipe, call.method)(*call.args, **call.kwargs)
                return pipe.execute()
        return self._script(step.source)(keys=list(step.keys), args=list(step.args))

    def _run(self, operation: str, op: Op) -> Any:
        try:
            step = next(op)
            while True:
                step = op.send(self._step(step))
        except StopIteration as stop:
            return stop.value
        except redis.RedisError as exc:
            raise self._error(operation, exc) from exc

    def publish(self, topic: str, event_id: str, body: bytes) -> str:
        """See :meth:`tidings.transport.Transport.publish`."""
        result: str = self._run("publish", self.ops.publish(topic, event_id, body))
        return result

    def ensure_group(self, topic: str, group: str, *, start: Start = "first") -> None:
        """See :meth:`tidings.transport.Transport.ensure_group`."""
        self._run("ensure_group", self.ops.ensure_group(topic, group, start))

    def consume(
        self, topic: str, group: str, consumer: str, *, count: int = 10, block: float = 1.0
    ) -> list[Message]:
        """See :meth:`tidings.transport.Transport.consume`."""
        result: list[Message] = self._run(
            "consume", self.ops.consume(topic, group, consumer, count, block, self.max_block)
        )
        return result

    def claim(
        self, topic: str, group: str, consumer: str, *, min_idle: float, count: int = 10
    ) -> list[Message]:
        """See :meth:`tidings.transport.Transport.claim`."""
        result: list[Message] = self._run(
            "claim", self.ops.claim(topic, group, consumer, min_idle, count)
        )
        return result

    def keep_alive(self, topic: str, group: str, consumer: str, ids: Sequence[str]) -> list[str]:
        """See :meth:`tidings.transport.Transport.keep_alive`."""
        result: list[str] = self._run(
            "keep_alive", self.ops.keep_alive(topic, group, consumer, ids)
        )
        return result

    def ack(self, topic: str, group: str, ids: Sequence[str]) -> int:
        """See :meth:`tidings.transport.Transport.ack`."""
        result: int = self._run("ack", self.ops.ack(topic, group, ids))
        return result

    def done(self, group: str, event_id: str) -> bool:
        """See :meth:`tidings.transport.Transport.done`."""
        result: bool = self._run("done", self.ops.done(group, event_id))
        return result

    def mark_done(self, group: str, event_id: str) -> bool:
        """See :meth:`tidings.transport.Transport.mark_done`."""
        result: bool = self._run("mark_done", self.ops.mark_done(group, event_id))
        return result

    def done_events(self, group: str, event_ids: Sequence[str]) -> set[str]:
        """See :meth:`tidings.transport.Transport.done_events`."""
        result: set[str] = self._run("done_events", self.ops.done_events(group, event_ids))
        return result

    def complete(self, topic: str, group: str, messages: Sequence[Message]) -> int:
        """See :meth:`tidings.transport.Transport.complete`."""
        result: int = self._run("complete", self.ops.complete(topic, group, messages))
        return result

    def dead_letter(self, topic: str, group: str, message: Message, reason: str) -> str:
        """See :meth:`tidings.transport.Transport.dead_letter`."""
        result: str = self._run("dead_letter", self.ops.dead_letter(topic, group, message, reason))
        return result

    def dead_letters(
        self, topic: str, group: str, *, count: int | None = None
    ) -> list[DeadMessage]:
        """See :meth:`tidings.transport.Transport.dead_letters`."""
        result: list[DeadMessage] = self._run(
            "dead_letters", self.ops.dead_letters(topic, group, count)
        )
        return result

    def retry(self, topic: str, group: str, ids: Sequence[str] | None = None) -> int:
        """See :meth:`tidings.transport.Transport.retry`."""
        result: int = self._run("retry", self.ops.retry(topic, group, ids))
        return result

    def remove_group(self, topic: str, group: str) -> bool:
        """See :meth:`tidings.transport.Transport.remove_group`."""
        result: bool = self._run("remove_group", self.ops.remove_group(topic, group))
        return result

    def status(self, topics: Sequence[str] | None = None) -> list[GroupStatus]:
        """See :meth:`tidings.transport.Transport.status`."""
        result: list[GroupStatus] = self._run("status", self.ops.status(topics))
        return result

    def delete_all(self) -> int:
        """Delete every key of this prefix (topics, dead letters, marks); return how many.

        For tests and for tearing an application's transport down; there is no undo.
        """
        deleted = 0
        try:
            for pattern in self.ops.patterns():
                keys = list(self.client.scan_iter(match=pattern, count=500))
                if keys:
                    deleted += int(self.client.delete(*keys))
        except redis.RedisError as exc:
            raise self._error("delete_all", exc) from exc
        return deleted

    def close(self) -> None:
        """Close the client's connections (a client passed in is left to its owner)."""
        if self._owns_client:
            self.client.close()

    def as_async(self) -> AsyncRedisTransport:
        """An asyncio face on the same Redis: its own connections, the same keys and options.

        Raises:
            TidingsValueError: This transport was given a ready client: make the
                ``AsyncRedisTransport`` yourself (with a ``redis.asyncio.Redis``).
        """
        if self.source is None:
            raise TidingsValueError(
                f"{self!r} was given a redis client, so its asyncio face cannot be made from "
                "it: create an AsyncRedisTransport with a redis.asyncio client"
            )
        url, client_kwargs = self.source
        return AsyncRedisTransport(
            url,
            prefix=self.prefix,
            maxlen=self.maxlen,
            approximate=self.ops.approximate,
            dedupe_ttl=self.ops.dedupe_ttl,
            **client_kwargs,
        )


class AsyncRedisTransport(Base):
    """An :class:`~tidings.transport.AsyncTransport` on Redis Streams (``redis.asyncio``).

    Takes the arguments of :class:`RedisTransport`; ``client`` is a ``redis.asyncio.Redis``.
    Use it from one event loop; a blocked ``consume()`` holds one connection.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.asyncio.Redis | None = None,
        prefix: str = "tidings",
        maxlen: int = DEFAULT_MAXLEN,
        approximate: bool = True,
        dedupe_ttl: float = DEFAULT_DEDUPE_TTL,
        **client_kwargs: Any,
    ) -> None:
        super().__init__(
            url,
            client,
            prefix=prefix,
            maxlen=maxlen,
            approximate=approximate,
            dedupe_ttl=dedupe_ttl,
            client_kwargs=client_kwargs,
            module=redis.asyncio,
        )

    async def _step(self, step: Step) -> Any:
        if isinstance(step, Call):
            try:
                return await getattr(self.client, step.method)(*step.args, **step.kwargs)
            except redis.ResponseError as exc:
                if step.ignore and step.ignore in str(exc):
                    return None
                raise
        if isinstance(step, Batch):
            async with self.client.pipeline(transaction=step.transaction) as pipe:
                for call in step.calls:
                    getattr(pipe, call.method)(*call.args, **call.kwargs)
                return await pipe.execute()
        assert isinstance(step, Script)
        return await self._script(step.source)(keys=list(step.keys), args=list(step.args))

    async def _run(self, operation: str, op: Op) -> Any:
        try:
            step = next(op)
            while True:
                step = op.send(await self._step(step))
        except StopIteration as stop:
            return stop.value
        except redis.RedisError as exc:
            raise self._error(operation, exc) from exc

    async def publish(self, topic: str, event_id: str, body: bytes) -> str:
        """See :meth:`tidings.transport.Transport.publish`."""
        result: str = await self._run("publish", self.ops.publish(topic, event_id, body))
        return result

    async def ensure_group(self, topic: str, group: str, *, start: Start = "first") -> None:
        """See :meth:`tidings.transport.Transport.ensure_group`."""
        await self._run("ensure_group", self.ops.ensure_group(topic, group, start))

    async def consume(
        self, topic: str, group: str, consumer: str, *, count: int = 10, block: float = 1.0
    ) -> list[Message]:
        """See :meth:`tidings.transport.Transport.consume`."""
        result: list[Message] = await self._run(
            "consume", self.ops.consume(topic, group, consumer, count, block, self.max_block)
        )
        return result

    async def claim(
        self, topic: str, group: str, consumer: str, *, min_idle: float, count: int = 10
    ) -> list[Message]:
        """See :meth:`tidings.transport.Transport.claim`."""
        result: list[Message] = await self._run(
            "claim", self.ops.claim(topic, group, consumer, min_idle, count)
        )
        return result

    async def keep_alive(
        self, topic: str, group: str, consumer: str, ids: Sequence[str]
    ) -> list[str]:
        """See :meth:`tidings.transport.Transport.keep_alive`."""
        result: list[str] = await self._run(
            "keep_alive", self.ops.keep_alive(topic, group, consumer, ids)
        )
        return result

    async def ack(self, topic: str, group: str, ids: Sequence[str]) -> int:
        """See :meth:`tidings.transport.Transport.ack`."""
        result: int = await self._run("ack", self.ops.ack(topic, group, ids))
        return result

    async def done(self, group: str, event_id: str) -> bool:
        """See :meth:`tidings.transport.Transport.done`."""
        result: bool = await self._run("done", self.ops.done(group, event_id))
        return result

    async def mark_done(self, group: str, event_id: str) -> bool:
        """See :meth:`tidings.transport.Transport.mark_done`."""
        result: bool = await self._run("mark_done", self.ops.mark_done(group, event_id))
        return result

    async def done_events(self, group: str, event_ids: Sequence[str]) -> set[str]:
        """See :meth:`tidings.transport.Transport.done_events`."""
        result: set[str] = await self._run("done_events", self.ops.done_events(group, event_ids))
        return result

    async def complete(self, topic: str, group: str, messages: Sequence[Message]) -> int:
        """See :meth:`tidings.transport.Transport.complete`."""
        result: int = await self._run("complete", self.ops.complete(topic, group, messages))
        return result

    async def dead_letter(self, topic: str, group: str, message: Message, reason: str) -> str:
        """See :meth:`tidings.transport.Transport.dead_letter`."""
        result: str = await self._run(
            "dead_letter", self.ops.dead_letter(topic, group, message, reason)
        )
        return result

    async def dead_letters(
        self, topic: str, group: str, *, count: int | None = None
    ) -> list[DeadMessage]:
        """See :meth:`tidings.transport.Transport.dead_letters`."""
        result: list[DeadMessage] = await self._run(
            "dead_letters", self.ops.dead_letters(topic, group, count)
        )
        return result

    async def retry(self, topic: str, group: str, ids: Sequence[str] | None = None) -> int:
        """See :meth:`tidings.transport.Transport.retry`."""
        result: int = await self._run("retry", self.ops.retry(topic, group, ids))
        return result

    async def remove_group(self, topic: str, group: str) -> bool:
        """See :meth:`tidings.transport.Transport.remove_group`."""
        result: bool = await self._run("remove_group", self.ops.remove_group(topic, group))
        return result

    async def status(self, topics: Sequence[str] | None = None) -> list[GroupStatus]:
        """See :meth:`tidings.transport.Transport.status`."""
        result: list[GroupStatus] = await self._run("status", self.ops.status(topics))
        return result

    async def close(self) -> None:
        """Close the client's connections (a client passed in is left to its owner)."""
        if self._owns_client:
            await self.client.aclose()
