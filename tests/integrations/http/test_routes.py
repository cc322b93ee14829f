"""The request signals around real requests, for every test app on its real server."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tidings.http import Request, request_finished

from .conftest import Served
from .recording import REQUEST_ID, Recorder
from .servers import connect, read_until, read_until_closed, request_bytes


def test_ok_sends_started_then_finished(
    served: Served, recorder: Recorder, client: httpx.Client
) -> None:
    """A plain response sends request_started then request_finished, from the middleware class."""
    response = client.get(f"{served.url}/ok?id=ok1")
    assert response.status_code == 200
    assert response.text == "ok"
    recorder.wait_finished("ok1")
    events = recorder.events("ok1", signals_only=True)
    assert [e.kind for e in events] == ["started", "finished"]
    assert all(e.data["sender"] is served.sender for e in events)
    started, finished = events
    assert started.data["keys"] == (("environ",) if served.wsgi else ("scope",))
    assert finished.data["keys"] == ()


def test_started_comes_before_the_app(
    served: Served, recorder: Recorder, client: httpx.Client
) -> None:
    """request_started has been handled before the application sees the request."""
    client.get(f"{served.url}/ok?id=ok2")
    recorder.wait_finished("ok2")
    assert recorder.kinds("ok2", signals_only=False) == ["started", "app", "finished"]


def test_streaming_finishes_after_the_last_chunk(
    served: Served, recorder: Recorder, client: httpx.Client
) -> None:
    """request_finished comes once, after every chunk of a streamed body."""
    response = client.get(f"{served.url}/stream?id=st1&n=4&delay=0.01")
    assert response.status_code == 200
    assert response.text == "chunk\n" * 4
    recorder.wait_finished("st1")
    kinds = recorder.kinds("st1", signals_only=False)
    assert kinds[:2] == ["started", "app"]
    assert kinds.count("chunk") == 4
    assert kinds.count("finished") == 1
    assert kinds.index("finished") > kinds.index("last_chunk")
    if "app_returns" in kinds:
        # The bare ASGI app notes when its final ``send`` returned: the signal came before that,
        # on the final message itself, not when the application returned.
        assert kinds.index("finished") < kinds.index("app_returns")


def test_error_reports_then_500_then_finishes_once(
    served: Served, recorder: Recorder, client: httpx.Client
) -> None:
    """An exception escaping the app sends got_request_exception, a 500, one request_finished."""
    response = client.get(f"{served.url}/error?id=err1", headers={"X-Probe": "yes"})
    assert response.status_code == 500
    recorder.wait_finished("err1")
    events = recorder.events("err1", signals_only=True)
    assert [e.kind for e in events] == ["started", "exception", "finished"]
    exception = events[1]
    assert exception.data["sender"] is None
    assert exception.data["keys"] == ("exception", "request")
    error = exception.data["exception"]
    assert isinstance(error, ValueError)
    assert str(error) == "boom err1"
    request: Request = exception.data["request"]
    assert (request.method, request.path, request.query_string) == ("GET", "/error", "id=err1")
    assert request.header("x-probe") == "yes"
    assert request.header("Host") == urlsplit(served.url).netloc
    assert request.client is not None
    assert request.client[0] == "127.0.0.1"
    assert request.scheme == "http"


def test_error_mid_stream_is_reported(
    served: Served, recorder: Recorder, client: httpx.Client
) -> None:
    """An exception raised while the body streams is reported, then request_finished once."""
    # The server cuts the connection of a response that broke halfway.
    with contextlib.suppress(httpx.HTTPError):
        client.get(f"{served.url}/stream-error?id=se1")
    recorder.wait_finished("se1")
    assert recorder.kinds("se1") == ["started", "exception", "finished"]


def test_not_found_sends_no_exception_signal(
    served: Served, recorder: Recorder, client: httpx.Client
) -> None:
    """A 404 the app produces itself is a response, not an exception: no exception signal."""
    response = client.get(f"{served.url}/missing?id=nf1")
    assert response.status_code == 404
    recorder.wait_finished("nf1")
    assert recorder.kinds("nf1") == ["started", "finished"]


def test_client_disconnect_mid_stream_finishes_once(served: Served, recorder: Recorder) -> None:
    """A client that hangs up mid-stream still gets exactly one request_finished, early."""
    with connect(served.url) as sock:
        sock.sendall(request_bytes(served.url, "/stream?id=dc1&n=500&delay=0.01"))
        assert read_until(sock, b"chunk") is not None, "server closed before the first chunk"
    recorder.wait_finished("dc1")
    recorder.wait_for(lambda: recorder.kinds("dc1") == ["started", "finished"])
    kinds = recorder.kinds("dc1", signals_only=False)
    assert "last_chunk" not in kinds
    assert kinds.count("chunk") < 500


def test_concurrent_requests_pair_their_signals(served: Served, recorder: Recorder) -> None:
    """Overlapping requests each get one request_started and one request_finished, in order."""
    ids = [f"cc{i}" for i in range(16)]
    barrier = threading.Barrier(len(ids))
    statuses: dict[str, int] = {}

    def fetch(rid: str) -> None:
        with httpx.Client(trust_env=False, timeout=10.0) as c:
            barrier.wait(timeout=10)
            statuses[rid] = c.get(f"{served.url}/stream?id={rid}&n=3&delay=0.01").status_code

    threads = [threading.Thread(target=fetch, args=(rid,)) for rid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert statuses == dict.fromkeys(ids, 200)
    for rid in ids:
        recorder.wait_finished(rid)
    for rid in ids:
        kinds = recorder.kinds(rid, signals_only=False)
        assert kinds.count("started") == 1, (rid, kinds)
        assert kinds.count("finished") == 1, (rid, kinds)
        assert kinds[0] == "started"
        assert kinds.index("finished") > kinds.index("last_chunk")
    all_started = [e for e in recorder.events(signals_only=True) if e.kind == "started"]
    assert len(all_started) == len(ids)


def test_failing_finished_receiver_loses_no_keepalive_request(
    served: Served, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A request_finished receiver that raises is logged; the next request on the connection
    is still answered."""

    def fail_first(sender: Any, **kwargs: Any) -> None:
        if REQUEST_ID.get() != "ka1":
            return
        if not served.wsgi:
            # uvicorn starts the next request as soon as a response is complete: fail while
            # it is being served. (waitress serves it only after this close() returns.)
            recorder.wait_for(lambda: "started" in recorder.kinds("ka2"))
        raise RuntimeError("request_finished receiver failed for ka1")

    # Both requests are on the wire before the first one finishes (HTTP/1.1 pipelining), so
    # the second one is already the server's when the receiver fails.
    pipelined = request_bytes(served.url, "/ok?id=ka1") + request_bytes(
        served.url, "/stream?id=ka2&n=4&delay=0.05", close=True
    )
    request_finished.connect(fail_first)
    try:
        with caplog.at_level(logging.ERROR, logger="tidings"), connect(served.url) as sock:
            sock.sendall(pipelined)
            received = read_until_closed(sock)
            recorder.wait_finished("ka2")
    finally:
        request_finished.disconnect(fail_first)
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 2, received
    assert recorder.kinds("ka1") == ["started", "finished"]
    assert recorder.kinds("ka2") == ["started", "finished"]
    assert received.count(b"chunk\n") == 4, received
    assert "request_finished receiver failed for ka1" in caplog.text


@pytest.mark.parametrize("path", ["/ok", "/missing"])
def test_no_signals_without_receivers(served: Served, client: httpx.Client, path: str) -> None:
    """With no receiver connected the middleware stays out of the way and the app still answers."""
    response = client.get(f"{served.url}{path}")
    assert response.status_code in (200, 404)
