"""Where the middleware sits in Starlette decides what it sees: the documented placement."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request as StarletteRequest
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tidings.asgi import SignalsMiddleware

from .apps import Tag
from .recording import Recorder, note
from .servers import serve_asgi


async def _forbidden(request: StarletteRequest) -> Response:
    raise HTTPException(403)


async def _handled(request: StarletteRequest) -> Response:
    raise KeyError("has its own handler")


async def _crash(request: StarletteRequest) -> Response:
    raise RuntimeError("crash")


async def _background(request: StarletteRequest) -> Response:
    rid = request.query_params["id"]
    return PlainTextResponse("ok", background=BackgroundTask(note, "background", rid))


def _failing_task() -> None:
    raise RuntimeError("background task failed")


async def _background_fails(request: StarletteRequest) -> Response:
    return PlainTextResponse("ok", background=BackgroundTask(_failing_task))


async def _key_error(request: StarletteRequest, exc: Exception) -> Response:
    return PlainTextResponse("bad key", status_code=400)


async def _server_error(request: StarletteRequest, exc: Exception) -> Response:
    return PlainTextResponse("custom 500", status_code=500)


def _app(**kwargs: Any) -> Starlette:
    return Starlette(
        routes=[
            Route("/forbidden", _forbidden),
            Route("/handled", _handled),
            Route("/crash", _crash),
            Route("/background", _background),
            Route("/background-fails", _background_fails),
        ],
        exception_handlers={KeyError: _key_error, Exception: _server_error},
        **kwargs,
    )


def test_add_middleware_placement(recorder: Recorder) -> None:
    """Inside ServerErrorMiddleware: HTTP and handled errors are responses, crashes are reported."""
    app = _app(middleware=[Middleware(Tag), Middleware(SignalsMiddleware)])
    with serve_asgi(app) as url, httpx.Client(trust_env=False) as client:
        statuses = {
            # One connection per request: uvicorn drops a connection whose app raised.
            path: client.get(
                f"{url}{path}?id={path[1:]}", headers={"Connection": "close"}
            ).status_code
            for path in ("/forbidden", "/handled", "/crash", "/background")
        }
        for rid in ("forbidden", "handled", "crash", "background"):
            recorder.wait_finished(rid)
        recorder.wait_for(lambda: "background" in recorder.kinds("background", signals_only=False))
    assert statuses == {"/forbidden": 403, "/handled": 400, "/crash": 500, "/background": 200}
    assert recorder.kinds("forbidden") == ["started", "finished"]
    assert recorder.kinds("handled") == ["started", "finished"]
    # A handler for Exception lives on ServerErrorMiddleware, outside: still reported.
    assert recorder.kinds("crash") == ["started", "exception", "finished"]
    # Background tasks run after the final body message, hence after request_finished.
    assert recorder.kinds("background", signals_only=False) == [
        "started",
        "finished",
        "background",
    ]


def test_wrapping_the_whole_app_reports_after_finishing(recorder: Recorder) -> None:
    """Outside ServerErrorMiddleware the 500 is already sent when the error arrives: avoid it."""
    app = Tag(SignalsMiddleware(_app()))
    with serve_asgi(app) as url, httpx.Client(trust_env=False) as client:
        assert client.get(f"{url}/crash?id=outer").text == "custom 500"
        recorder.wait_for(lambda: len(recorder.kinds("outer")) == 3)
    assert recorder.kinds("outer") == ["started", "finished", "exception"]


def test_background_task_errors_are_reported_after_finishing(recorder: Recorder) -> None:
    """A failing background task runs after request_finished and is still reported."""
    app = _app(middleware=[Middleware(Tag), Middleware(SignalsMiddleware)])
    with serve_asgi(app) as url, httpx.Client(trust_env=False) as client:
        assert client.get(f"{url}/background-fails?id=bgf").status_code == 200
        recorder.wait_for(lambda: len(recorder.kinds("bgf")) == 3)
    assert recorder.kinds("bgf") == ["started", "finished", "exception"]
