"""Django views with the same routes as the request-signal test apps, for the differential tests.

``/ok``; ``/stream?n=&delay=`` (``n`` chunks, default three); ``/error`` (raises before
responding); ``/stream-error`` (raises after the first chunk); other paths are Django's own 404.
Each view puts the request's ``?id=`` in the test apps' context variable and notes its steps,
like the tidings test apps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from tests.integrations.http.recording import REQUEST_ID, note


def _rid(request: HttpRequest) -> str | None:
    rid: str | None = request.GET.get("id")
    REQUEST_ID.set(rid)
    note("app", rid)
    return rid


def ok(request: HttpRequest) -> HttpResponse:
    """A plain response."""
    _rid(request)
    return HttpResponse("ok", content_type="text/plain")


def _sync_chunks(rid: str | None, n: int, delay: float, fail: bool) -> Iterator[bytes]:
    for i in range(n):
        note("chunk", rid, i=i)
        yield b"chunk\n"
        if fail:
            raise ValueError(f"boom mid-stream {rid}")
        time.sleep(delay)
    note("last_chunk", rid)


async def _async_chunks(rid: str | None, n: int, delay: float, fail: bool) -> AsyncIterator[bytes]:
    for i in range(n):
        note("chunk", rid, i=i)
        yield b"chunk\n"
        if fail:
            raise ValueError(f"boom mid-stream {rid}")
        await asyncio.sleep(delay)
    note("last_chunk", rid)


def _streaming(request: HttpRequest, *, fail: bool) -> StreamingHttpResponse:
    rid = _rid(request)
    n = int(request.GET.get("n", "3"))
    delay = float(request.GET.get("delay", "0"))
    # Django warns when it has to adapt an iterator to the other protocol; give each handler
    # the kind it consumes natively.
    if isinstance(request, ASGIRequest):
        chunks = _async_chunks(rid, n, delay, fail)
        return StreamingHttpResponse(chunks, content_type="text/plain")
    return StreamingHttpResponse(_sync_chunks(rid, n, delay, fail), content_type="text/plain")


def stream(request: HttpRequest) -> StreamingHttpResponse:
    """A streamed body of three chunks."""
    return _streaming(request, fail=False)


def stream_error(request: HttpRequest) -> StreamingHttpResponse:
    """A streamed body that raises after its first chunk."""
    return _streaming(request, fail=True)


def error(request: HttpRequest) -> HttpResponse:
    """A view that raises."""
    raise ValueError(f"boom {_rid(request)}")
