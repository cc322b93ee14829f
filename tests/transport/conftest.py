"""Transports for the contract tests: each case runs on every implementation.

``make_transport(**options)`` builds a transport of the parametrized kind with the options the
test needs (``maxlen``, ``dedupe_ttl``, ...). The Redis kind (the server named by
``TIDINGS_REDIS_URL``, by default ``redis://127.0.0.1:6379/0``) gets a key prefix of its own
and deletes every key under it afterwards; it skips where Redis is unreachable, and fails
under ``CI=true``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import _server_missing
from tests.transport.servers import RedisServer
from tidings.transport import AsyncTransport, InMemoryTransport, Transport

MakeTransport = Callable[..., Transport]
MakeAsyncTransport = Callable[..., AsyncTransport]

REDIS_URL = os.environ.get("TIDINGS_REDIS_URL", "redis://127.0.0.1:6379/0")

# redis-resp3: the same server through redis-py's RESP3 replies (maps where RESP2 has lists).
KINDS = [
    "memory",
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("redis-resp3", marks=pytest.mark.redis),
]


def _protocol(kind: str) -> dict[str, Any]:
    return {"protocol": 3} if kind == "redis-resp3" else {}


def redis_or_skip(url: str = REDIS_URL) -> None:
    """Skip the test (fail it under CI) unless redis-py is installed and Redis answers."""
    try:
        import redis
    except ImportError:  # pragma: no cover - redis is a dev dependency
        _server_missing("redis-py", 'pip install "tidings[redis]"')
        raise
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        _server_missing(
            f"Redis at {url} ({exc.__class__.__name__})",
            "install and start redis-server or set TIDINGS_REDIS_URL",
        )
    finally:
        client.close()


def unique_prefix() -> str:
    """A key prefix no other test uses."""
    return f"tidings-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=KINDS)
def make_transport(request: pytest.FixtureRequest) -> Iterator[MakeTransport]:
    """A factory of transports of one kind, all closed (and their keys removed) afterwards."""
    made: list[Transport] = []
    if request.param.startswith("redis"):
        redis_or_skip()
        from tidings.transport.redis import RedisTransport

        prefix = unique_prefix()
        protocol = _protocol(request.param)

        def make(**options: Any) -> Transport:
            transport: Transport = RedisTransport(REDIS_URL, prefix=prefix, **protocol, **options)
            made.append(transport)
            return transport

        yield make
        cleaner = RedisTransport(REDIS_URL, prefix=prefix)
        cleaner.delete_all()
        cleaner.close()
    else:

        def make(**options: Any) -> Transport:
            transport: Transport = InMemoryTransport(**options)
            made.append(transport)
            return transport

        yield make
    for transport in made:
        transport.close()


@pytest.fixture
def transport(make_transport: MakeTransport) -> Transport:
    """A transport with the default options."""
    return make_transport()


@pytest.fixture(params=KINDS)
def make_async_transport(request: pytest.FixtureRequest) -> Iterator[MakeAsyncTransport]:
    """A factory of asyncio transports of one kind (closed inside the test's own loop)."""
    if request.param.startswith("redis"):
        redis_or_skip()
        from tidings.transport.redis import AsyncRedisTransport, RedisTransport

        prefix = unique_prefix()
        protocol = _protocol(request.param)

        def make_redis(**options: Any) -> AsyncTransport:
            return AsyncRedisTransport(REDIS_URL, prefix=prefix, **protocol, **options)

        yield make_redis
        cleaner = RedisTransport(REDIS_URL, prefix=prefix)
        cleaner.delete_all()
        cleaner.close()
        return

    def make(**options: Any) -> AsyncTransport:
        return InMemoryTransport(**options).as_async()

    yield make


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RedisServer]]:
    """A factory of private redis-servers (started), each killed by PID afterwards."""
    servers: list[RedisServer] = []

    def start(**options: Any) -> RedisServer:
        server = RedisServer(tmp_path_factory.mktemp("redis"), **options)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()
