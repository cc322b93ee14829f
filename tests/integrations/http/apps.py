"""The apps under test: the same routes as a bare ASGI app, Starlette, FastAPI, bare WSGI, Flask.

Routes: ``/ok``; ``/stream?n=&delay=`` (``n`` chunks, ``delay`` seconds apart, stopping early
when the client goes away); ``/error`` (raises before responding); ``/stream-error`` (raises
after the first chunk); anything else is a 404 the app produces itself. Every request carries
``?id=`` and every app puts it in :data:`REQUEST_ID` and notes its steps on the recorder.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

import fastapi
import flask
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request as StarletteRequest
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

import tidings.flask
from tidings import asgi, wsgi

from .recording import REQUEST_ID, note, query_id


def _params(query: str) -> tuple[int, float]:
    values = parse_qs(query)
    return int(values.get("n", ["3"])[0]), float(values.get("delay", ["0.01"])[0])


# -- bare ASGI ----------------------------------------------------------------------------------


async def bare_asgi(scope: Any, receive: Any, send: Any) -> None:
    """A framework-free ASGI app (also answering lifespan)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            note(message["type"], None)
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    rid = query_id(scope["query_string"])
    REQUEST_ID.set(rid)
    note("app", rid)
    path = scope["path"]
    if path == "/ok":
        await _asgi_start(send, 200)
        await send({"type": "http.response.body", "body": b"ok"})
    elif path == "/stream":
        await _asgi_stream(scope, receive, send, rid)
    elif path == "/error":
        raise ValueError(f"boom {rid}")
    elif path == "/stream-error":
        await _asgi_start(send, 200)
        await send({"type": "http.response.body", "body": b"chunk 0\n", "more_body": True})
        raise ValueError(f"boom mid-stream {rid}")
    else:
        await _asgi_start(send, 404)
        await send({"type": "http.response.body", "body": b"not found"})


async def _asgi_start(send: Any, status: int) -> None:
    headers = [(b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def _asgi_stream(scope: Any, receive: Any, send: Any, rid: str | None) -> None:
    n, delay = _params(scope["query_string"].decode())
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.ensure_future(watch())
    try:
        await _asgi_start(send, 200)
        for i in range(n):
            if gone.is_set():
                note("gone", rid)
                return
            note("chunk", rid, i=i)
            await send({"type": "http.response.body", "body": b"chunk\n", "more_body": True})
            await asyncio.sleep(delay)
        note("last_chunk", rid)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        note("app_returns", rid)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


bare_asgi_with_signals = asgi.SignalsMiddleware(bare_asgi)

# -- Starlette and FastAPI ----------------------------------------------------------------------


def _rid(request: StarletteRequest) -> str | None:
    rid = request.query_params.get("id")
    REQUEST_ID.set(rid)
    note("app", rid)
    return rid


async def _chunks(rid: str | None, n: int, delay: float, fail: bool = False) -> AsyncIterator[str]:
    for i in range(n):
        note("chunk", rid, i=i)
        yield "chunk\n"
        if fail:
            raise ValueError(f"boom mid-stream {rid}")
        await asyncio.sleep(delay)
    note("last_chunk", rid)


async def _ok(request: StarletteRequest) -> PlainTextResponse:
    _rid(request)
    return PlainTextResponse("ok")


async def _stream(request: StarletteRequest) -> StreamingResponse:
    rid = _rid(request)
    n, delay = _params(request.url.query)
    return StreamingResponse(_chunks(rid, n, delay), media_type="text/plain")


async def _stream_error(request: StarletteRequest) -> StreamingResponse:
    return StreamingResponse(_chunks(_rid(request), 3, 0.0, fail=True), media_type="text/plain")


async def _error(request: StarletteRequest) -> PlainTextResponse:
    raise ValueError(f"boom {_rid(request)}")


class Tag:
    """Put the request's ``?id=`` in REQUEST_ID before anything else runs (404s included)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            REQUEST_ID.set(query_id(scope["query_string"]))
        await self.app(scope, receive, send)


starlette_app = Starlette(
    routes=[
        Route("/ok", _ok),
        Route("/stream", _stream),
        Route("/stream-error", _stream_error),
        Route("/error", _error),
    ],
    middleware=[Middleware(Tag), Middleware(asgi.SignalsMiddleware)],
)

fastapi_app = fastapi.FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
fastapi_app.add_middleware(asgi.SignalsMiddleware)
fastapi_app.add_middleware(Tag)  # added last, so outermost
for _path, _endpoint in [
    ("/ok", _ok),
    ("/stream", _stream),
    ("/stream-error", _stream_error),
    ("/error", _error),
]:
    fastapi_app.add_route(_path, _endpoint)

# -- bare WSGI ----------------------------------------------------------------------------------


def bare_wsgi(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """A framework-free WSGI app."""
    rid = query_id(environ.get("QUERY_STRING", ""))
    REQUEST_ID.set(rid)
    note("app", rid)
    path = environ["PATH_INFO"]
    headers = [("Content-Type", "text/plain")]
    if path == "/ok":
        start_response("200 OK", headers)
        return [b"ok"]
    if path == "/stream":
        n, delay = _params(environ.get("QUERY_STRING", ""))
        start_response("200 OK", headers)
        return _wsgi_chunks(rid, n, delay)
    if path == "/error":
        raise ValueError(f"boom {rid}")
    if path == "/stream-error":
        start_response("200 OK", headers)
        return _wsgi_chunks(rid, 3, 0.0, fail=True)
    start_response("404 Not Found", headers)
    return [b"not found"]


def _wsgi_chunks(rid: str | None, n: int, delay: float, fail: bool = False) -> Iterator[bytes]:
    for i in range(n):
        note("chunk", rid, i=i)
        yield b"chunk\n"
        if fail:
            raise ValueError(f"boom mid-stream {rid}")
        time.sleep(delay)
    note("last_chunk", rid)


bare_wsgi_with_signals = wsgi.SignalsMiddleware(bare_wsgi)

# -- Flask --------------------------------------------------------------------------------------

flask_app = flask.Flask("tidings_test_flask")


@flask_app.before_request
def _flask_tag() -> None:
    REQUEST_ID.set(flask.request.args.get("id"))


def _flask_rid() -> str | None:
    rid = flask.request.args.get("id")
    REQUEST_ID.set(rid)
    note("app", rid)
    return rid


@flask_app.get("/ok")
def _flask_ok() -> str:
    _flask_rid()
    return "ok"


@flask_app.get("/stream")
def _flask_stream() -> flask.Response:
    rid = _flask_rid()
    n, delay = _params(flask.request.query_string.decode())
    return flask.Response(_wsgi_chunks(rid, n, delay), mimetype="text/plain")


@flask_app.get("/stream-error")
def _flask_stream_error() -> flask.Response:
    return flask.Response(_wsgi_chunks(_flask_rid(), 3, 0.0, fail=True), mimetype="text/plain")


@flask_app.get("/error")
def _flask_error() -> str:
    raise ValueError(f"boom {_flask_rid()}")


tidings.flask.init_app(flask_app)
