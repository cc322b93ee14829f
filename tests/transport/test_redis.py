"""The Redis transport's own behaviour: configuration, errors, keys, prefixes, auth."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from tests.transport.conftest import REDIS_URL, redis_or_skip, unique_prefix
from tests.transport.servers import RedisServer, free_port
from tidings import TidingsValueError
from tidings.transport import NoSuchGroupError, TransportError

pytestmark = pytest.mark.redis

redis = pytest.importorskip("redis", reason='needs redis-py: pip install "tidings[redis]"')

from tidings.transport.redis import (  # noqa: E402
    DEFAULT_URL,
    AsyncRedisTransport,
    RedisTransport,
    redacted,
)


@pytest.fixture
def shared() -> Iterator[RedisTransport]:
    """A transport on the shared Redis with a prefix of its own, its keys deleted afterwards."""
    redis_or_skip()
    transport = RedisTransport(REDIS_URL, prefix=unique_prefix())
    yield transport
    transport.delete_all()
    transport.close()


def test_importing_tidings_transport_does_not_import_redis() -> None:
    """``import tidings.transport`` (and the in-memory one) leaves redis-py unimported."""
    code = (
        "import sys, tidings, tidings.transport, tidings.transport.memory; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'redis'))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_an_unreachable_redis_raises_transport_error_naming_operation_and_url() -> None:
    """publish() with nothing listening raises TransportError with the operation and URL."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    transport = RedisTransport(url, socket_connect_timeout=2)
    try:
        with pytest.raises(TransportError) as caught:
            transport.publish("t", "e", b"x")
    finally:
        transport.close()
    assert (caught.value.operation, caught.value.target) == ("publish", url)
    assert "publish" in str(caught.value)
    assert url in str(caught.value)
    assert isinstance(caught.value.__cause__, redis.ConnectionError)


def test_the_password_never_shows_in_errors() -> None:
    """A URL's password is replaced by *** in the error message and target."""
    port = free_port()
    transport = RedisTransport(f"redis://app:s3cret@127.0.0.1:{port}/0", socket_connect_timeout=2)
    try:
        with pytest.raises(TransportError) as caught:
            transport.consume("t", "g", "c", block=0)
    finally:
        transport.close()
    assert "s3cret" not in str(caught.value)
    assert caught.value.target == f"redis://app:***@127.0.0.1:{port}/0"


def test_redacted_leaves_urls_without_password() -> None:
    """redacted() changes only the password part."""
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redacted("rediss://:pw@cache:6380/2") == "rediss://:***@cache:6380/2"


def test_the_url_comes_from_tidings_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a url argument the transport uses TIDINGS_REDIS_URL."""
    url = f"redis://127.0.0.1:{free_port()}/3"
    monkeypatch.setenv("TIDINGS_REDIS_URL", url)
    transport = RedisTransport()
    transport.close()
    assert transport.url == url


def test_the_default_url_is_local(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without url or TIDINGS_REDIS_URL the transport uses redis://127.0.0.1:6379/0."""
    monkeypatch.delenv("TIDINGS_REDIS_URL", raising=False)
    transport = RedisTransport()
    transport.close()
    assert transport.url == DEFAULT_URL == "redis://127.0.0.1:6379/0"


def test_a_client_given_is_used_and_left_open(shared: RedisTransport) -> None:
    """RedisTransport(client=...) uses that client and does not close it."""
    client = redis.Redis.from_url(REDIS_URL)
    transport = RedisTransport(client=client, prefix=shared.prefix)
    transport.ensure_group("t", "g")
    transport.publish("t", "e0", b"x")
    transport.close()
    assert client.ping() is True
    assert [m.event_id for m in shared.consume("t", "g", "c", block=0)] == ["e0"]
    client.close()


def test_a_client_and_a_url_together_are_refused() -> None:
    """Passing both a client and a URL raises TidingsValueError."""
    client = redis.Redis.from_url(REDIS_URL)
    with pytest.raises(TidingsValueError, match="either"):
        RedisTransport(REDIS_URL, client=client)
    client.close()


def test_decode_responses_is_refused() -> None:
    """A client that decodes replies to str cannot carry bytes bodies: refused."""
    with pytest.raises(TidingsValueError, match="decode_responses"):
        RedisTransport(REDIS_URL, decode_responses=True)
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    with pytest.raises(TidingsValueError, match="decode_responses"):
        RedisTransport(client=client)
    client.close()


def test_keys_live_under_the_prefix(shared: RedisTransport) -> None:
    """A topic is the stream {prefix}:{topic}; the other keys start with {prefix}|."""
    shared.ensure_group("shop.mail", "shop.mail")
    [message] = [shared.publish("shop.mail", "e0", b"x")]
    got = shared.consume("shop.mail", "shop.mail", "c", block=0)
    shared.mark_done("shop.mail", "e0")
    shared.dead_letter("shop.mail", "shop.mail", got[0], "x")
    keys = {k.decode() for k in shared.client.scan_iter(match=f"{shared.prefix}*")}
    p = shared.prefix
    assert keys == {
        f"{p}:shop.mail",
        f"{p}|topics",
        f"{p}|done|shop.mail|e0",
        f"{p}|dead|shop.mail|shop.mail",
    }
    assert shared.client.type(f"{p}:shop.mail") == b"stream"
    assert message == got[0].id


def test_two_prefixes_do_not_see_each_other(shared: RedisTransport) -> None:
    """Two applications with different prefixes share one Redis without collision."""
    other = RedisTransport(REDIS_URL, prefix=unique_prefix())
    try:
        for transport in (shared, other):
            transport.ensure_group("t", "g")
        shared.publish("t", "mine", b"x")
        other.publish("t", "theirs", b"x")
        shared.mark_done("g", "mine")
        assert [m.event_id for m in other.consume("t", "g", "c", block=0)] == ["theirs"]
        assert other.done("g", "mine") is False
        assert [s.length for s in other.status()] == [1]
    finally:
        other.delete_all()
        other.close()


def test_delete_all_removes_every_key_of_the_prefix(shared: RedisTransport) -> None:
    """delete_all() leaves no key of the prefix behind."""
    shared.ensure_group("t", "g")
    shared.publish("t", "e", b"x")
    shared.mark_done("g", "e")
    assert shared.delete_all() == 3
    assert list(shared.client.scan_iter(match=f"{shared.prefix}*")) == []


def test_a_group_lost_by_the_server_raises_no_such_group(shared: RedisTransport) -> None:
    """After the group is lost (a restart without persistence), reads raise NoSuchGroupError."""
    shared.ensure_group("t", "g")
    shared.client.xgroup_destroy(f"{shared.prefix}:t", "g")
    with pytest.raises(NoSuchGroupError, match="ensure_group"):
        shared.consume("t", "g", "c", block=0)
    with pytest.raises(NoSuchGroupError):
        shared.claim("t", "g", "c", min_idle=0)
    shared.ensure_group("t", "g")
    assert shared.consume("t", "g", "c", block=0) == []


def test_a_bad_prefix_is_refused() -> None:
    """An empty prefix or one with spaces raises TidingsValueError naming it."""
    with pytest.raises(TidingsValueError, match="prefix"):
        RedisTransport(REDIS_URL, prefix="my app")


def test_auth_passes_through(redis_server: Callable[..., RedisServer]) -> None:
    """A password in the URL authenticates; without it, the error names the operation."""
    server = redis_server(password="pw-for-test")
    good = RedisTransport(server.url)
    bad = RedisTransport(f"redis://127.0.0.1:{server.port}/0")
    try:
        good.ensure_group("t", "g")
        assert good.publish("t", "e", b"x")
        with pytest.raises(TransportError, match="publish"):
            bad.publish("t", "e", b"x")
    finally:
        good.close()
        bad.close()


def test_client_options_pass_through(shared: RedisTransport) -> None:
    """Client keyword arguments (here a client name) reach redis-py."""
    transport = RedisTransport(REDIS_URL, prefix=shared.prefix, client_name="tidings-test")
    try:
        assert transport.client.client_getname() in ("tidings-test", b"tidings-test")
    finally:
        transport.close()


def test_the_async_transport_reports_unreachable_redis() -> None:
    """AsyncRedisTransport raises TransportError with the operation and URL too."""
    import asyncio

    url = f"redis://127.0.0.1:{free_port()}/0"

    async def scenario() -> TransportError:
        transport = AsyncRedisTransport(url, socket_connect_timeout=2)
        try:
            await transport.publish("t", "e", b"x")
        except TransportError as exc:
            return exc
        finally:
            await transport.close()
        raise AssertionError("publish() to an unreachable Redis returned")

    error = asyncio.run(scenario())
    assert (error.operation, error.target) == ("publish", url)


def test_a_block_longer_than_the_socket_timeout_returns_empty(shared: RedisTransport) -> None:
    """consume(block=...) past the client's read timeout waits a little less, then returns []."""
    transport = RedisTransport(REDIS_URL, prefix=shared.prefix, socket_timeout=1.0)
    try:
        transport.ensure_group("t", "g")
        started = time.monotonic()
        assert transport.consume("t", "g", "c", block=30) == []
        assert time.monotonic() - started < 20
    finally:
        transport.close()


def test_the_default_client_blocks_longer_than_one_second(shared: RedisTransport) -> None:
    """With redis-py's default timeouts, consume(block=2) really waits about 2 s."""
    shared.ensure_group("t", "g")
    started = time.monotonic()
    assert shared.consume("t", "g", "c", block=2) == []
    assert time.monotonic() - started >= 1.5


def test_tls_passes_through(redis_server: Callable[..., RedisServer]) -> None:
    """A rediss:// URL with the CA as a client option talks TLS; without the CA it is refused."""
    server = redis_server(tls=True)
    url = f"rediss://127.0.0.1:{server.tls_port}/0"
    trusted = RedisTransport(url, ssl_ca_certs=str(server.ca_file))
    untrusted = RedisTransport(url, socket_connect_timeout=3)
    try:
        trusted.ensure_group("t", "g")
        trusted.publish("t", "e", b"over tls")
        assert [m.body for m in trusted.consume("t", "g", "c", block=0)] == [b"over tls"]
        with pytest.raises(TransportError, match=f"cannot reach Redis at {url}"):
            untrusted.publish("t", "e", b"x")
    finally:
        trusted.close()
        untrusted.close()
