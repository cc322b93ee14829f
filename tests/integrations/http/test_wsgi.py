"""WSGI middleware and Flask bridge specifics: ``close()``, ``len()``, failures, one report."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast
from wsgiref.util import FileWrapper, setup_testing_defaults

import flask
import httpx
import pytest

import tidings.flask
from tidings.http import REPORTED_KEY, got_request_exception, request_finished, request_started
from tidings.wsgi import SignalsMiddleware

from .recording import REQUEST_ID, Recorder, failing_then_recording
from .servers import connect, read_until, request_bytes, reset_on_close, serve_wsgi


def _environ() -> dict[str, Any]:
    environ: dict[str, Any] = {"QUERY_STRING": "id=direct"}
    setup_testing_defaults(environ)
    REQUEST_ID.set("direct")
    return environ


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return lambda data: None


class Body:
    """A response iterable with ``close()``, noting when it is iterated and closed."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def __iter__(self) -> Iterator[bytes]:
        yield b"a"
        self.recorder.note("iterated", "direct")

    def close(self) -> None:
        self.recorder.note("inner_close", "direct")


def test_finished_comes_from_close_after_the_apps_own_close(recorder: Recorder) -> None:
    """request_finished is sent by ``close()``, after the app's iterable was closed, once."""

    def app(environ: Any, start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [])
        return Body(recorder)

    result = SignalsMiddleware(app)(_environ(), _start_response)
    assert list(result) == [b"a"]
    assert recorder.kinds("direct") == ["started"]
    result.close()  # type: ignore[attr-defined]
    result.close()  # type: ignore[attr-defined]
    assert recorder.kinds("direct", signals_only=False) == [
        "started",
        "iterated",
        "inner_close",
        "finished",
    ]


class CountingBody:
    """A response that is its own iterator, counting the calls of its ``close()``."""

    def __init__(self, n: int, chunk: bytes) -> None:
        self.left = n
        self.chunk = chunk
        self.closes = 0

    def __iter__(self) -> CountingBody:
        return self

    def __next__(self) -> bytes:
        if self.left == 0:
            raise StopIteration
        self.left -= 1
        return self.chunk

    def close(self) -> None:
        self.closes += 1


def test_iteration_stopped_early_closes_the_apps_response_once(recorder: Recorder) -> None:
    """A server that drops the body iterator unfinished, then closes, closes the app's once."""
    body = CountingBody(3, b"x")

    def app(environ: Any, start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [])
        return body

    result = SignalsMiddleware(app)(_environ(), _start_response)
    chunks = iter(result)
    assert next(chunks) == b"x"
    del chunks  # the server's loop unwinds: the client went away
    gc.collect()
    result.close()  # type: ignore[attr-defined]
    assert body.closes == 1
    assert recorder.kinds("direct") == ["started", "finished"]


def test_client_hanging_up_mid_body_on_waitress_closes_the_apps_response_once(
    recorder: Recorder,
) -> None:
    """On waitress, a client that resets the connection mid-body: one close(), one finished."""
    bodies: list[CountingBody] = []

    def app(environ: Any, start_response: Any) -> Iterable[bytes]:
        REQUEST_ID.set("hangup")
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        bodies.append(CountingBody(2000, b"y" * 65536))
        return bodies[-1]

    with serve_wsgi(SignalsMiddleware(app)) as url:
        with connect(url) as sock:
            sock.sendall(request_bytes(url, "/?id=hangup"))
            assert read_until(sock, b"yyyy") is not None, "server closed before the body"
            reset_on_close(sock)
        recorder.wait_finished("hangup")
    assert [b.closes for b in bodies] == [1]
    assert bodies[0].left > 0, "the whole body was sent: the client did not hang up early"
    assert recorder.kinds("hangup") == ["started", "finished"]


def test_sized_responses_keep_their_length(recorder: Recorder) -> None:
    """A list response keeps ``len()``, so waitress still sends a Content-Length."""

    def app(environ: Any, start_response: Any) -> Iterable[bytes]:
        REQUEST_ID.set(environ["QUERY_STRING"][3:])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]

    result = SignalsMiddleware(app)(_environ(), _start_response)
    assert len(result) == 1  # type: ignore[arg-type]
    with serve_wsgi(SignalsMiddleware(app)) as url, httpx.Client(trust_env=False) as c:
        response = c.get(f"{url}/?id=len1")
        recorder.wait_finished("len1")
    assert response.headers["content-length"] == "5"
    assert "transfer-encoding" not in response.headers


def test_generator_responses_have_no_length(recorder: Recorder) -> None:
    """A generator response stays unsized, so servers never call ``len()`` on it."""

    def app(environ: Any, start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [])
        return iter([b"x"])

    result = SignalsMiddleware(app)(_environ(), _start_response)
    assert not hasattr(result, "__len__")
    result.close()  # type: ignore[attr-defined]


def test_app_raising_before_responding(recorder: Recorder) -> None:
    """An exception raised by the app call is reported, then finished, then re-raised as is."""
    error = ValueError("the app's own")

    def app(environ: Any, start_response: Any) -> Iterable[bytes]:
        raise error

    with pytest.raises(ValueError) as info:
        SignalsMiddleware(app)(_environ(), _start_response)
    assert info.value is error
    assert recorder.kinds("direct") == ["started", "exception", "finished"]
    assert recorder.events("direct", signals_only=True)[1].data["exception"] is error


def test_failing_exception_receiver_leaves_the_apps_exception(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A got_request_exception receiver that raises is logged; the app's exception propagates."""
    error = ValueError("the app's own")

    def app(environ: Any, start_response: Any) -> Iterable[bytes]:
        raise error

    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    got_request_exception.connect(broken)
    try:
        with caplog.at_level(logging.ERROR), pytest.raises(ValueError) as info:
            SignalsMiddleware(app)(_environ(), _start_response)
    finally:
        got_request_exception.disconnect(broken)
    assert info.value is error
    assert "receiver bug" in caplog.text
    assert recorder.kinds("direct") == ["started", "exception", "finished"]


def test_failing_finished_receiver_is_logged_and_the_others_still_run(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A request_finished receiver's error is logged, not raised from close(); others run."""

    def app(environ: Any, start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [])
        return Body(recorder)

    with failing_then_recording(request_finished) as later:
        result = SignalsMiddleware(app)(_environ(), _start_response)
        assert list(result) == [b"a"]
        with caplog.at_level(logging.ERROR, logger="tidings"):
            result.close()  # type: ignore[attr-defined]
    assert recorder.kinds("direct") == ["started", "finished"]
    assert later.kinds("direct") == ["finished"]
    logged = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert [(type(e), str(e)) for e in logged] == [(RuntimeError, "receiver bug")]


def test_failing_started_receiver_stops_the_request(recorder: Recorder) -> None:
    """A request_started receiver that raises propagates; the app never runs, nothing follows."""
    called: list[bool] = []

    def app(environ: Any, start_response: Any) -> Iterable[bytes]:
        called.append(True)
        return []

    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    request_started.connect(broken)
    try:
        with pytest.raises(RuntimeError, match="receiver bug"):
            SignalsMiddleware(app)(_environ(), _start_response)
    finally:
        request_started.disconnect(broken)
    assert called == []
    assert recorder.kinds("direct") == ["started"]


def test_without_receivers_the_apps_response_is_returned_as_is() -> None:
    """With no receiver connected the app's own iterable goes to the server unwrapped."""
    body = [b"untouched"]

    def app(environ: Any, start_response: Any) -> Iterable[bytes]:
        return body

    assert SignalsMiddleware(app)(_environ(), _start_response) is body


def _propagating_flask_app() -> flask.Flask:
    app = flask.Flask("tidings_test_propagating")
    app.config["PROPAGATE_EXCEPTIONS"] = True

    @app.get("/error")
    def error() -> str:
        REQUEST_ID.set(flask.request.args.get("id"))
        raise ValueError("propagated")

    tidings.flask.init_app(app)
    tidings.flask.init_app(app)  # idempotent
    return app


def test_flask_propagated_exception_is_reported_once(recorder: Recorder) -> None:
    """With PROPAGATE_EXCEPTIONS on, Flask's bridge and the middleware report it once in all."""
    app = _propagating_flask_app()
    assert isinstance(app.wsgi_app, SignalsMiddleware)
    assert not isinstance(app.wsgi_app.app, SignalsMiddleware)
    with serve_wsgi(app) as url, httpx.Client(trust_env=False) as c:
        assert c.get(f"{url}/error?id=fp1").status_code == 500
        recorder.wait_finished("fp1")
    assert recorder.kinds("fp1") == ["started", "exception", "finished"]
    exception = recorder.events("fp1", signals_only=True)[1].data["exception"]
    assert str(exception) == "propagated"


def test_flask_bridge_alone_marks_the_environ(recorder: Recorder) -> None:
    """``forward_exception`` reports through tidings and marks the environ for the middleware."""
    app = flask.Flask("tidings_test_bridge_only")

    @app.get("/error")
    def error() -> str:
        raise ValueError("bridged")

    flask.got_request_exception.connect(tidings.flask.forward_exception, app, weak=False)
    environ = _environ()
    environ["PATH_INFO"] = "/error"
    try:
        body = app.wsgi_app(environ, _start_response)
        b"".join(body)
    finally:
        flask.got_request_exception.disconnect(tidings.flask.forward_exception, app)
    assert recorder.kinds("direct") == ["exception"]
    assert str(environ[REPORTED_KEY]) == "bridged"


def test_request_finished_has_no_arguments(recorder: Recorder) -> None:
    """request_finished carries only the sender, as in Django."""
    seen: list[dict[str, Any]] = []

    def spy(**kwargs: Any) -> None:
        seen.append(kwargs)

    def app(environ: Any, start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [])
        return [b""]

    request_finished.connect(spy)
    try:
        SignalsMiddleware(app)(_environ(), _start_response).close()  # type: ignore[attr-defined]
    finally:
        request_finished.disconnect(spy)
    assert [sorted(k) for k in seen] == [["sender", "signal"]]


def test_server_file_wrapper_is_kept_and_its_close_finishes(
    recorder: Recorder, tmp_path: Path
) -> None:
    """A ``wsgi.file_wrapper`` response reaches the server as is; its close() finishes once."""
    data = tmp_path / "data.bin"
    data.write_bytes(b"0123456789" * 1000)

    def app(environ: Any, start_response: Any) -> Iterable[bytes]:
        REQUEST_ID.set(environ["QUERY_STRING"][3:])
        start_response("200 OK", [("Content-Length", "10000")])
        return cast("Iterable[bytes]", environ["wsgi.file_wrapper"](data.open("rb"), 4096))

    environ = _environ()
    environ["wsgi.file_wrapper"] = FileWrapper
    result = SignalsMiddleware(app)(environ, _start_response)
    assert isinstance(result, FileWrapper)
    assert b"".join(result) == data.read_bytes()
    result.close()
    result.close()
    assert recorder.kinds("direct") == ["started", "finished"]

    with serve_wsgi(SignalsMiddleware(app)) as url, httpx.Client(trust_env=False) as client:
        response = client.get(f"{url}/?id=file1")
        recorder.wait_finished("file1")
    assert response.content == data.read_bytes()
    assert recorder.kinds("file1") == ["started", "finished"]
