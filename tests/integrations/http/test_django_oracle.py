"""Differential: the same routes through Django's own handlers and through tidings' middleware.

Django's ``WSGIHandler`` runs on waitress and its ``ASGIHandler`` on uvicorn, exactly like the
bare tidings test apps; the signal sequences (names and arguments) must be the same.
"""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.oracle import setup_django

from . import apps
from .recording import CURRENT, Recorder
from .servers import serve_asgi, serve_wsgi

ROUTES = {"/ok": 200, "/stream": 200, "/error": 500, "/missing": 404}


class DjangoRecorder(Recorder):
    """A recorder connected to Django's request signals instead of tidings' ones."""

    def connect(self, *, asynchronous: bool = False) -> None:
        """Connect the sync receivers to ``django.core.signals``."""
        from django.core import signals

        self._django = [
            (signals.request_started, self.on_started),
            (signals.got_request_exception, self.on_django_exception),
            (signals.request_finished, self.on_finished),
        ]
        for signal, receiver in self._django:
            signal.connect(receiver, weak=False)

    def disconnect(self) -> None:
        """Disconnect from ``django.core.signals``."""
        for signal, receiver in self._django:
            signal.disconnect(receiver)

    def on_django_exception(self, sender: Any, **kwargs: Any) -> None:
        """Record Django's got_request_exception with its HttpRequest."""
        request = kwargs["request"]
        self.note(
            "exception",
            request.GET.get("id"),
            sender=sender,
            keys=tuple(sorted(k for k in kwargs if k != "signal")),
            method=request.method,
            path=request.path,
        )


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    """Django's two handlers and the two bare tidings apps, each on its real server."""
    setup_django()
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.wsgi import WSGIHandler

    with contextlib.ExitStack() as stack:
        yield {
            "django-wsgi": stack.enter_context(serve_wsgi(WSGIHandler())),
            "django-asgi": stack.enter_context(serve_asgi(ASGIHandler())),
            "tidings-wsgi": stack.enter_context(serve_wsgi(apps.bare_wsgi_with_signals)),
            "tidings-asgi": stack.enter_context(serve_asgi(apps.bare_asgi_with_signals)),
        }


def _sequence(rec: Recorder, url: str, path: str, rid: str) -> tuple[int, list[Any]]:
    """Request ``path`` once; return the status (0: cut off) and the signals it caused."""
    CURRENT.append(rec)
    rec.connect()
    status = 0
    try:
        # A body that breaks halfway makes the server cut the connection.
        with (
            httpx.Client(trust_env=False, timeout=10.0) as client,
            contextlib.suppress(httpx.HTTPError),
        ):
            status = client.get(f"{url}{path}?id={rid}").status_code
        rec.wait_for(lambda: [e.kind for e in rec.events(signals_only=True)][-1:] == ["finished"])
    finally:
        rec.disconnect()
        CURRENT.remove(rec)
    return status, rec.events(signals_only=True)


def _normalise(events: list[Any]) -> list[tuple[str, tuple[str, ...]]]:
    # tidings adds ``exception=`` to got_request_exception (a documented extension), and names
    # the middleware class as sender where Django names its handler class.
    return [(e.kind, tuple(k for k in e.data["keys"] if k != "exception")) for e in events]


@pytest.mark.parametrize("protocol", ["wsgi", "asgi"])
@pytest.mark.parametrize("path", list(ROUTES))
def test_same_signals_as_django(servers: dict[str, str], protocol: str, path: str) -> None:
    """Each route sends the same signals, with the same arguments, as Django's handler does."""
    theirs_status, theirs = _sequence(
        DjangoRecorder(), servers[f"django-{protocol}"], path, f"dj-{protocol}{path}"
    )
    ours_status, ours = _sequence(
        Recorder(), servers[f"tidings-{protocol}"], path, f"td-{protocol}{path}"
    )
    assert theirs_status == ours_status == ROUTES[path]
    assert _normalise(ours) == _normalise(theirs)
    assert all(isinstance(e.data["sender"], type) for e in ours + theirs if e.kind != "exception")
    for mine, django in zip(ours, theirs, strict=True):
        if mine.kind == "exception":
            assert django.data["sender"] is mine.data["sender"] is None
            request = mine.data["request"]
            assert (request.method, request.path) == (django.data["method"], django.data["path"])


@pytest.mark.parametrize("protocol", ["wsgi", "asgi"])
def test_streamed_body_comes_before_request_finished_like_django(
    servers: dict[str, str], protocol: str
) -> None:
    """Both Django and tidings send request_finished only after the last streamed chunk."""
    for rec, name in [(DjangoRecorder(), "django"), (Recorder(), "tidings")]:
        _sequence(rec, servers[f"{name}-{protocol}"], "/stream", f"{name}-order")
        kinds = [e.kind for e in rec.events() if e.kind in ("chunk", "last_chunk", "finished")]
        assert kinds == ["chunk", "chunk", "chunk", "last_chunk", "finished"], name


def test_error_mid_stream_is_reported_where_django_is_silent(servers: dict[str, str]) -> None:
    """Django misses an exception raised by a streamed body; tidings reports it (a deviation).

    Over WSGI only: Django's ASGI handler sends no request_finished at all in that case (and
    leaks the request's body file), which is no sequence worth pinning.
    """
    protocol = "wsgi"
    _, theirs = _sequence(DjangoRecorder(), servers[f"django-{protocol}"], "/stream-error", "dj")
    _, ours = _sequence(Recorder(), servers[f"tidings-{protocol}"], "/stream-error", "td")
    assert [e.kind for e in theirs] == ["started", "finished"]
    assert [e.kind for e in ours] == ["started", "exception", "finished"]


def _hang_up_mid_stream(url: str, rid: str) -> None:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        target = f"/stream?id={rid}&n=300&delay=0.01"
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
        received = b""
        while b"chunk" not in received:
            data = sock.recv(4096)
            assert data, "server closed before the first chunk"
            received += data


@pytest.mark.parametrize("protocol", ["wsgi", "asgi"])
def test_client_disconnect_mid_stream_like_django(servers: dict[str, str], protocol: str) -> None:
    """A client hanging up mid-stream gets request_finished once, early, in Django and tidings."""
    for rec, name in [(DjangoRecorder(), "django"), (Recorder(), "tidings")]:
        CURRENT.append(rec)
        rec.connect()
        try:
            _hang_up_mid_stream(servers[f"{name}-{protocol}"], f"{name}-gone")
            rec.wait_for(functools.partial(_has_finished, rec))
        finally:
            rec.disconnect()
            CURRENT.remove(rec)
        kinds = [e.kind for e in rec.events()]
        assert [k for k in kinds if k in ("started", "exception", "finished")] == [
            "started",
            "finished",
        ], name
        assert "last_chunk" not in kinds, name


def _has_finished(recorder: Recorder) -> bool:
    return "finished" in [e.kind for e in recorder.events()]
