"""ASGI middleware specifics: async receivers, pass-through scopes, cancellation, failures.

The timing cases servers rarely produce on demand (cancellation, a failing server ``send``,
trailers, ``pathsend``) call the middleware directly with plain ``receive``/``send`` coroutines,
which is all an ASGI server is to an application.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import MutableMapping
from typing import Any

import httpx
import pytest

from tidings.asgi import SignalsMiddleware
from tidings.http import got_request_exception, request_finished, request_started

from . import apps
from .recording import CURRENT, Recorder, failing_then_recording
from .servers import serve_asgi

SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/direct",
    "raw_path": b"/direct",
    "root_path": "",
    "query_string": b"id=direct",
    "headers": [(b"host", b"example.test")],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
}


class Wire:
    """The server side of one direct call: a request body to receive, the messages sent."""

    def __init__(self, *, fail_on: str | None = None) -> None:
        self.sent: list[MutableMapping[str, Any]] = []
        self.fail_on = fail_on

    async def receive(self) -> dict[str, Any]:
        """Deliver the (empty) request body, then wait like a connected client."""
        if not self.sent and not hasattr(self, "_body_sent"):
            self._body_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(self, message: MutableMapping[str, Any]) -> None:
        """Record a message, or fail like a server whose client went away."""
        if message["type"] == self.fail_on:
            raise OSError("client went away")
        self.sent.append(message)
        if CURRENT:
            CURRENT[-1].note("wire", None, type=message["type"])


def _request_id_app(app: Any) -> Any:
    async def tagged(scope: Any, receive: Any, send: Any) -> None:
        from .recording import REQUEST_ID

        REQUEST_ID.set("direct")
        await app(scope, receive, send)

    return tagged


def test_async_receivers_are_awaited_before_the_app_runs() -> None:
    """Async receivers are awaited on the server's loop: request_started completes first."""
    rec = Recorder()
    rec.connect(asynchronous=True)
    CURRENT.append(rec)
    try:
        with serve_asgi(apps.bare_asgi_with_signals) as url, httpx.Client(trust_env=False) as c:
            assert c.get(f"{url}/stream?id=as1&n=2&delay=0").status_code == 200
            assert c.get(f"{url}/error?id=as2").status_code == 500
            rec.wait_finished("as1")
            rec.wait_finished("as2")
    finally:
        CURRENT.remove(rec)
        rec.disconnect()
    assert rec.kinds("as1", signals_only=False) == [
        "started",
        "app",
        "chunk",
        "chunk",
        "last_chunk",
        "finished",
        "app_returns",
    ]
    assert rec.kinds("as2") == ["started", "exception", "finished"]


REQUEST_PATH: contextvars.ContextVar[str | None] = contextvars.ContextVar("path", default=None)


def _remember_path(sender: Any, scope: Any, **kwargs: Any) -> None:
    REQUEST_PATH.set(scope["path"])


def test_request_started_receivers_can_set_per_request_context(recorder: Recorder) -> None:
    """A sync request_started receiver's context changes are seen by request_finished's."""
    seen: list[str | None] = []

    def on_finished(sender: Any, **kwargs: Any) -> None:
        seen.append(REQUEST_PATH.get())

    request_started.connect(_remember_path)
    request_finished.connect(on_finished)
    try:
        with serve_asgi(apps.bare_asgi_with_signals) as url, httpx.Client(trust_env=False) as c:
            c.get(f"{url}/ok?id=ctx1")
            recorder.wait_finished("ctx1")
    finally:
        request_started.disconnect(_remember_path)
        request_finished.disconnect(on_finished)
    assert seen == ["/ok"]


def test_lifespan_passes_through(recorder: Recorder) -> None:
    """Lifespan events reach the app untouched and send no request signal."""
    with serve_asgi(apps.bare_asgi_with_signals, lifespan="on"):
        recorder.wait_for(lambda: recorder.kinds(None, signals_only=False) == ["lifespan.startup"])
    assert [e.kind for e in recorder.events()] == ["lifespan.startup", "lifespan.shutdown"]


def test_websocket_scope_passes_through_untouched(recorder: Recorder) -> None:
    """A websocket connection reaches the app with the server's own scope, receive and send."""
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.extend([scope, receive, send])

    wire = Wire()
    scope = {**SCOPE, "type": "websocket"}
    asyncio.run(SignalsMiddleware(app)(scope, wire.receive, wire.send))
    assert seen == [scope, wire.receive, wire.send]
    assert recorder.events() == []


def test_without_receivers_the_app_gets_the_servers_send() -> None:
    """With no receiver connected the middleware adds no wrapper at all."""
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(send)

    wire = Wire()
    asyncio.run(SignalsMiddleware(app)(dict(SCOPE), wire.receive, wire.send))
    assert seen == [wire.send]


def test_cancellation_mid_stream_finishes_once(recorder: Recorder) -> None:
    """A request task cancelled mid-stream sends request_finished once and stays cancelled."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await asyncio.Event().wait()

    async def main() -> None:
        wire = Wire()
        task = asyncio.ensure_future(
            SignalsMiddleware(_request_id_app(app))(dict(SCOPE), wire.receive, wire.send)
        )
        while len(wire.sent) < 2:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert recorder.kinds("direct") == ["started", "finished"]


def test_cancelled_again_while_finishing_still_runs_the_receivers(recorder: Recorder) -> None:
    """A second cancellation while request_finished runs does not cut its receivers short."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        finished = asyncio.Event()

        async def slow_finish(sender: Any, **kwargs: Any) -> None:
            await asyncio.sleep(0.05)
            finished.set()

        request_finished.connect(slow_finish)
        try:
            wire = Wire()
            task = asyncio.ensure_future(
                SignalsMiddleware(app)(dict(SCOPE), wire.receive, wire.send)
            )
            await asyncio.sleep(0.01)
            task.cancel()
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(finished.wait(), 5)
        finally:
            request_finished.disconnect(slow_finish)

    asyncio.run(main())
    assert [e.kind for e in recorder.events(signals_only=True)] == ["started", "finished"]


def test_failing_exception_receiver_leaves_the_apps_exception(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A got_request_exception receiver that raises is logged; the app's exception propagates."""
    error = ValueError("the app's own")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise error

    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    got_request_exception.connect(broken)
    try:
        wire = Wire()
        with caplog.at_level(logging.ERROR), pytest.raises(ValueError) as info:
            asyncio.run(
                SignalsMiddleware(_request_id_app(app))(dict(SCOPE), wire.receive, wire.send)
            )
    finally:
        got_request_exception.disconnect(broken)
    assert info.value is error
    assert "receiver bug" in caplog.text
    assert recorder.kinds("direct") == ["started", "exception", "finished"]


def test_failing_finished_receiver_is_logged_and_the_others_still_run(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A request_finished receiver's error is logged, never raised; later receivers still run."""
    returned: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        returned.append(True)

    with failing_then_recording(request_finished) as later:
        wire = Wire()
        with caplog.at_level(logging.ERROR, logger="tidings"):
            asyncio.run(
                SignalsMiddleware(_request_id_app(app))(dict(SCOPE), wire.receive, wire.send)
            )
    assert returned == [True]
    assert recorder.kinds("direct") == ["started", "finished"]
    assert later.kinds("direct") == ["finished"]
    logged = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert [(type(e), str(e)) for e in logged] == [(RuntimeError, "receiver bug")]


def test_failing_started_receiver_stops_the_request(recorder: Recorder) -> None:
    """A request_started receiver that raises propagates; the app never runs, nothing follows."""
    called: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(True)

    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    request_started.connect(broken)
    try:
        wire = Wire()
        with pytest.raises(RuntimeError, match="receiver bug"):
            asyncio.run(SignalsMiddleware(app)(dict(SCOPE), wire.receive, wire.send))
    finally:
        request_started.disconnect(broken)
    assert called == []
    assert [e.kind for e in recorder.events(signals_only=True)] == ["started"]


def test_a_failing_server_send_is_not_an_application_error(recorder: Recorder) -> None:
    """When the server's ``send`` fails (client gone), no exception signal; finished once."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x"})

    wire = Wire(fail_on="http.response.body")
    with pytest.raises(OSError, match="client went away"):
        asyncio.run(SignalsMiddleware(_request_id_app(app))(dict(SCOPE), wire.receive, wire.send))
    assert recorder.kinds("direct") == ["started", "finished"]


@pytest.mark.parametrize(
    ("messages", "final"),
    [
        pytest.param(
            [
                {"type": "http.response.start", "status": 200, "trailers": True},
                {"type": "http.response.body", "body": b"x"},
                {"type": "http.response.trailers", "headers": [], "more_trailers": True},
                {"type": "http.response.trailers", "headers": []},
            ],
            3,
            id="trailers",
        ),
        pytest.param(
            [
                {"type": "http.response.start", "status": 200},
                {"type": "http.response.pathsend", "path": "/etc/hostname"},
            ],
            1,
            id="pathsend",
        ),
        pytest.param(
            [
                {"type": "http.response.start", "status": 200},
                {"type": "http.response.body", "body": b"a", "more_body": True},
                {"type": "http.response.body", "body": b"b", "more_body": False},
            ],
            2,
            id="body",
        ),
    ],
)
def test_finished_follows_the_message_that_completes_the_response(
    recorder: Recorder, messages: list[dict[str, Any]], final: int
) -> None:
    """request_finished comes right after the message that completes the response."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        for message in messages:
            await send(message)
        recorder.note("app_returns", "direct")

    wire = Wire()
    asyncio.run(SignalsMiddleware(_request_id_app(app))(dict(SCOPE), wire.receive, wire.send))
    timeline = [
        e.data["type"] if e.kind == "wire" else e.kind
        for e in recorder.events()
        if e.kind in ("wire", "finished", "app_returns")
    ]
    assert timeline == [m["type"] for m in messages[: final + 1]] + ["finished"] + [
        m["type"] for m in messages[final + 1 :]
    ] + ["app_returns"]


def test_custom_sender(recorder: Recorder) -> None:
    """``sender=`` replaces the middleware class as the sender of started and finished."""
    calls: list[str] = []

    class Site:
        pass

    def only_site(sender: Any, **kwargs: Any) -> None:
        calls.append(sender.__name__)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    request_started.connect(only_site, sender=Site)
    request_finished.connect(only_site, sender=Site)
    try:
        wire = Wire()
        asyncio.run(SignalsMiddleware(app, sender=Site)(dict(SCOPE), wire.receive, wire.send))
        asyncio.run(SignalsMiddleware(app)(dict(SCOPE), wire.receive, wire.send))
    finally:
        request_started.disconnect(only_site, sender=Site)
        request_finished.disconnect(only_site, sender=Site)
    assert calls == ["Site", "Site"]
    senders = [e.data["sender"] for e in recorder.events(signals_only=True)]
    assert senders == [Site, Site, SignalsMiddleware, SignalsMiddleware]


def test_a_protocol_error_from_the_server_is_an_application_error(recorder: Recorder) -> None:
    """uvicorn's RuntimeError for a body sent before the start is the app's bug: reported."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        from .recording import REQUEST_ID

        REQUEST_ID.set("proto")
        await send({"type": "http.response.body", "body": b"no start first"})

    with (
        serve_asgi(SignalsMiddleware(app)) as url,
        httpx.Client(trust_env=False) as client,
    ):
        assert client.get(f"{url}/?id=proto").status_code == 500
        recorder.wait_finished("proto")
    assert recorder.kinds("proto") == ["started", "exception", "finished"]
    error = recorder.events("proto", signals_only=True)[1].data["exception"]
    assert isinstance(error, RuntimeError)
