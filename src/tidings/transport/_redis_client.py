"""What both Redis transports share: the URL (and its redaction), the client, the errors.

Imported by :mod:`tidings.transport.redis` once redis-py is known to be installed.
"""

from __future__ import annotations

import inspect
import os
import urllib.parse
from typing import Any

import redis

from tidings._errors import NoSuchGroupError, TidingsValueError, TransportError
from tidings.transport._redis_ops import Operations

__all__ = ["DEFAULT_URL", "Base", "redacted"]

#: The URL used when neither ``url`` nor ``TIDINGS_REDIS_URL`` gives one.
DEFAULT_URL = "redis://127.0.0.1:6379/0"


def redacted(url: str) -> str:
    """The URL with its password replaced by ``***`` (for messages and logs)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _client_url(client: Any) -> str:
    """A URL describing a client given ready-made (host, port and db of its pool)."""
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    db = kwargs.get("db", 0)
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={db}"
    scheme = "rediss" if "SSL" in getattr(pool, "connection_class", type).__name__ else "redis"
    return f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{db}"


def _socket_timeout(client: Any) -> float | None:
    """The read timeout of the client's connections (redis-py 8 defaults to 5 s)."""
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    for key in ("socket_timeout", "orig_socket_timeout"):
        if key in kwargs:
            return None if kwargs[key] is None else float(kwargs[key])
    try:
        default = inspect.signature(pool.connection_class).parameters["socket_timeout"].default
    except (KeyError, TypeError, ValueError):
        return None
    return float(default) if isinstance(default, (int, float)) else None


class Base:
    """What both transports share: the options, the keys, the errors."""

    def __init__(
        self,
        url: str | None,
        client: Any,
        *,
        prefix: str,
        maxlen: int,
        approximate: bool,
        dedupe_ttl: float,
        client_kwargs: dict[str, Any],
        module: Any,
    ) -> None:
        self.ops = Operations(prefix, maxlen, approximate, dedupe_ttl)
        if client is not None:
            if url is not None or client_kwargs:
                raise TidingsValueError(
                    "pass either a redis client or a URL and client options, not both"
                )
            self.client = client
            self.url = _client_url(client)
            self._owns_client = False
            #: What the client was made from (URL and options), None for a client given.
            self.source: tuple[str, dict[str, Any]] | None = None
        else:
            url = url or os.environ.get("TIDINGS_REDIS_URL") or DEFAULT_URL
            if client_kwargs.get("decode_responses"):
                raise TidingsValueError(
                    "the Redis transport reads bytes: decode_responses=True is not supported"
                )
            self.client = module.Redis.from_url(url, **client_kwargs)
            self.url = redacted(url)
            self._owns_client = True
            self.source = (url, dict(client_kwargs))
        if self.client.connection_pool.connection_kwargs.get("decode_responses"):
            raise TidingsValueError(
                "the Redis transport reads bytes: give it a client without decode_responses=True"
            )
        self._scripts: dict[str, Any] = {}
        # A blocking XREADGROUP longer than the socket's read timeout would fail as a timeout:
        # consume() waits at most a little less (and returns empty, as after its block).
        timeout = _socket_timeout(self.client)
        self.max_block = None if timeout is None else max(0.05, timeout - 0.5)

    @property
    def prefix(self) -> str:
        """The key prefix."""
        return self.ops.prefix

    @property
    def maxlen(self) -> int:
        """Entries a topic keeps (``MAXLEN``)."""
        return self.ops.maxlen

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} prefix={self.prefix!r}>"

    def _script(self, source: str) -> Any:
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self.client.register_script(source)
        return script

    def _error(self, operation: str, exc: Exception) -> TransportError:
        text = str(exc)
        if isinstance(exc, redis.ResponseError) and "NOGROUP" in text:
            return NoSuchGroupError(
                f"{operation} on Redis at {self.url}: {text} (call ensure_group() first)",
                operation=operation,
                target=self.url,
            )
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            what = f"cannot reach Redis at {self.url}"
        else:
            what = f"Redis at {self.url} refused it"
        return TransportError(
            f"{operation} failed: {what}: {type(exc).__name__}: {text}",
            operation=operation,
            target=self.url,
        )
