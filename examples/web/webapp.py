"""A tiny Starlette app whose request signals log timing and errors, without touching a view.

Serve it with ``uvicorn webapp:app`` from this folder, or run ``demo.py`` next to it.

The receivers below are the whole integration: ``request_started`` notes when a request began
(in a context variable, so concurrent requests don't mix), ``request_finished`` logs how long
it took, and ``got_request_exception`` logs the failing request and its error.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request as StarletteRequest
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from tidings import receiver
from tidings.asgi import SignalsMiddleware
from tidings.http import Request, got_request_exception, request_finished, request_started

log = logging.getLogger("webapp")

# What request_started learned, for request_finished of the same request: every request runs
# in its own asyncio task, hence its own context.
_current: contextvars.ContextVar[tuple[str, float]] = contextvars.ContextVar("current_request")


# inline=True: a quick, non-blocking receiver runs on the event loop itself, in the request's
# own context, instead of taking a trip to a worker thread.
@receiver(request_started, inline=True)
def note_start(sender: Any, scope: dict[str, Any], **kwargs: Any) -> None:
    """Remember which request started, and when."""
    _current.set((f"{scope['method']} {scope['path']}", time.perf_counter()))
    log.info("→ %s %s", scope["method"], scope["path"])


@receiver(request_finished, inline=True)
def log_timing(sender: Any, **kwargs: Any) -> None:
    """Log how long the request took, from start to the last byte handed to the server."""
    label, started = _current.get()
    log.info("← %s finished in %.1f ms", label, (time.perf_counter() - started) * 1000)


@receiver(got_request_exception)
async def report_error(sender: Any, request: Request, exception: Exception, **kwargs: Any) -> None:
    """Report an unhandled error with what the request was (async receivers are awaited)."""
    agent = request.header("user-agent", "unknown client")
    log.error(
        "✗ %s %s?%s from %s raised %s: %s",
        request.method,
        request.path,
        request.query_string,
        agent,
        type(exception).__name__,
        exception,
    )


async def hello(request: StarletteRequest) -> PlainTextResponse:
    """Say hello."""
    return PlainTextResponse(f"hello, {request.query_params.get('name', 'world')}\n")


async def countdown(request: StarletteRequest) -> StreamingResponse:
    """Stream a countdown, one line every 20 ms."""

    async def lines() -> AsyncIterator[str]:
        for n in (3, 2, 1):
            yield f"{n}…\n"
            await asyncio.sleep(0.02)
        yield "liftoff\n"

    return StreamingResponse(lines(), media_type="text/plain")


async def boom(request: StarletteRequest) -> PlainTextResponse:
    """Fail, like real code sometimes does."""
    raise ZeroDivisionError("the budget divided by zero customers")


app = Starlette(
    routes=[Route("/hello", hello), Route("/countdown", countdown), Route("/boom", boom)],
    # add_middleware / middleware=[...] places it inside Starlette's ServerErrorMiddleware, where
    # unhandled errors still propagate through it (see docs/http.md).
    middleware=[Middleware(SignalsMiddleware)],
)
