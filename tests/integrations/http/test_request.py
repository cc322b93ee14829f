"""The request object given to got_request_exception receivers."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest

from tidings.http import Request

from .servers import serve_asgi, serve_wsgi


def test_from_scope() -> None:
    """An ASGI scope becomes method, full path, raw query, lower-case headers, client, scheme."""
    request = Request.from_scope(
        {
            "type": "http",
            "method": "POST",
            "scheme": "https",
            "root_path": "/shop",
            "path": "/shop/café",
            "query_string": b"q=a%20b&x=1",
            "headers": [(b"Host", b"example.test"), (b"x-tag", b"1"), (b"x-tag", b"2")],
            "client": ("10.0.0.1", 4242),
        }
    )
    assert request == Request(
        method="POST",
        path="/shop/café",
        query_string="q=a%20b&x=1",
        headers=(("host", "example.test"), ("x-tag", "1"), ("x-tag", "2")),
        client=("10.0.0.1", 4242),
        scheme="https",
    )
    assert request.header("X-Tag") == "1"
    assert request.header("missing", "none") == "none"


def test_from_scope_adds_a_missing_root_path() -> None:
    """A server that leaves ``root_path`` out of ``path`` still yields the full path."""
    request = Request.from_scope({"type": "http", "root_path": "/api", "path": "/items"})
    assert request.path == "/api/items"
    assert request.client is None


def test_from_environ() -> None:
    """A WSGI environ becomes the same fields; the path is decoded from PEP 3333's latin-1."""
    environ = {
        "REQUEST_METHOD": "put",
        "SCRIPT_NAME": "/shop",
        "PATH_INFO": "/café".encode().decode("latin-1"),
        "QUERY_STRING": "q=1",
        "CONTENT_TYPE": "text/plain",
        "CONTENT_LENGTH": "",
        "HTTP_HOST": "example.test",
        "HTTP_X_FORWARDED_FOR": "1.2.3.4",
        "REMOTE_ADDR": "10.0.0.1",
        "wsgi.url_scheme": "https",
    }
    request = Request.from_environ(environ)
    assert request.method == "PUT"
    assert request.path == "/shop/café"
    assert request.query_string == "q=1"
    assert dict(request.headers) == {
        "content-type": "text/plain",
        "host": "example.test",
        "x-forwarded-for": "1.2.3.4",
    }
    assert request.client == ("10.0.0.1", 0)
    assert request.scheme == "https"


def test_request_is_frozen_and_hashable() -> None:
    """The request is immutable, so receivers can keep it or use it as a key."""
    request = Request(method="GET", path="/")
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.path = "/other"  # type: ignore[misc]
    assert {request: 1}[Request(method="GET", path="/")] == 1


def test_same_request_over_asgi_and_wsgi_gives_the_same_object() -> None:
    """One request seen by uvicorn and by waitress yields equal requests, but for the port."""
    seen: list[Request] = []

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(Request.from_scope(scope))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
        seen.append(Request.from_environ(environ))
        start_response("204 No Content", [])
        return []

    headers = {b"X-Probe": "été".encode(), b"Accept": b"text/plain"}
    with (
        serve_asgi(asgi_app) as asgi_url,
        serve_wsgi(wsgi_app) as wsgi_url,
        httpx.Client(trust_env=False) as client,
    ):
        for url in (asgi_url, wsgi_url):
            client.get(f"{url}/caf%C3%A9/x?q=%C3%A9t%C3%A9&b=2", headers=headers)
    from_asgi, from_wsgi = seen
    assert from_asgi.path == "/café/x"
    assert from_asgi.query_string == "q=%C3%A9t%C3%A9&b=2"
    assert from_asgi.header("x-probe") == "été".encode().decode("latin-1")

    def comparable(request: Request) -> Any:
        headers = sorted(h for h in request.headers if h[0] != "host")
        assert request.client is not None
        return dataclasses.replace(request, headers=tuple(headers), client=(request.client[0], 0))

    assert comparable(from_asgi) == comparable(from_wsgi)


@pytest.mark.parametrize(
    ("signal_name", "connect_for"),
    [
        ("request_started", "sender"),
        ("request_finished", "sender"),
        ("got_request_exception", "any"),
    ],
)
def test_has_request_listeners_sees_each_signal(signal_name: str, connect_for: str) -> None:
    """has_request_listeners is true once any one request signal has a receiver that matches."""
    import tidings.http

    class Handler:
        pass

    def receiver(**kwargs: Any) -> None:
        pass

    signal = getattr(tidings.http, signal_name)
    assert not tidings.http.has_request_listeners(Handler)
    signal.connect(receiver, sender=Handler if connect_for == "sender" else None)
    try:
        assert tidings.http.has_request_listeners(Handler)
    finally:
        signal.disconnect(receiver, sender=Handler if connect_for == "sender" else None)
    assert not tidings.http.has_request_listeners(Handler)


def test_has_request_listeners_ignores_receivers_of_other_senders() -> None:
    """A receiver connected for another middleware's requests does not count."""
    import tidings.http

    class Mine:
        pass

    class Other:
        pass

    def receiver(**kwargs: Any) -> None:
        pass

    tidings.http.request_started.connect(receiver, sender=Other)
    try:
        assert not tidings.http.has_request_listeners(Mine)
        assert tidings.http.has_request_listeners(Other)
    finally:
        tidings.http.request_started.disconnect(receiver, sender=Other)
