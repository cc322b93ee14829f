"""Request-signal middleware overhead: real HTTP requests over loopback, side by side.

A minimal bare ASGI app on uvicorn and a minimal bare WSGI app on waitress are each served
three times in this process, on free loopback ports: plain, wrapped in tidings'
``SignalsMiddleware`` with no receiver connected, and wrapped with a no-op receiver on each of
the three request signals. A keep-alive ``http.client`` connection per server sends ``GET /``
in a bounded loop; the contenders are timed in interleaved, shuffled rounds (see
``bench/_timing.py``) and each keeps its best round.

Loopback requests jitter by a few percent from round to round, more than the middleware costs
when nothing listens; so the table also times the middleware's own per-request cost directly
(the wrapped app called in-process against the plain one), which is the precise figure, and
states it as a share of a real request.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import uvicorn
from bench._timing import (
    CpuShare,
    Settings,
    Timing,
    async_statement_batch,
    callable_batch,
    environment,
    measure,
)
from waitress import wasyncore
from waitress.server import create_server

from tidings import asgi, wsgi
from tidings.http import got_request_exception, request_finished, request_started

_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
_START = {"type": "http.response.start", "status": 200, "headers": _HEADERS}
_BODY = {"type": "http.response.body", "body": b"ok"}


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    """The smallest useful ASGI app: 200, ``ok``."""
    await send(_START)
    await send(_BODY)


def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
    """The smallest useful WSGI app: 200, ``ok``."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


class _Sink:
    """No-op receivers that count their calls, so a contender is checked before it is timed."""

    def __init__(self) -> None:
        self.calls = 0

    def sync(self, sender: Any, **kwargs: Any) -> None:
        self.calls += 1

    async def asynchronous(self, sender: Any, **kwargs: Any) -> None:
        self.calls += 1


@contextmanager
def _uvicorn(app: Any) -> Iterator[int]:
    # proto=IPPROTO_TCP matters: asyncio enables TCP_NODELAY only on sockets that say TCP,
    # and without it every response waits out the client's delayed ACK (about 40 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def _waitress(app: Any) -> Iterator[int]:
    server: Any = create_server(app, host="127.0.0.1", port=0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield server.effective_port
    finally:
        # The select() loop closes its own sockets, then the worker threads stop.
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        thread.join(10)
        server.task_dispatcher.shutdown()


def _requester(port: int) -> Callable[[], None]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def get() -> None:
        connection.request("GET", "/")
        response = connection.getresponse()
        if response.read() != b"ok":  # pragma: no cover - a broken contender
            raise RuntimeError(f"unexpected response {response.status} from port {port}")

    return get


def _connect(sink: _Sink, *, asynchronous: bool) -> Callable[[], None]:
    receiver = sink.asynchronous if asynchronous else sink.sync
    signals = (request_started, request_finished, got_request_exception)
    for signal in signals:
        signal.connect(receiver, weak=False)

    def disconnect() -> None:
        for signal in signals:
            signal.disconnect(receiver)

    return disconnect


def _check_receivers(sink: _Sink, get: Callable[[], None], server: str) -> None:
    """Fail unless one request reaches request_started's and request_finished's receivers."""
    before = sink.calls
    get()
    # request_finished may run just after the client has read the response.
    deadline = time.monotonic() + 5
    while sink.calls - before < 2:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server}: the receivers were not called")
        time.sleep(0.001)


def _direct_overhead(settings: Settings) -> dict[str, Timing]:
    """In-process cost of one request through each app, plain and wrapped, no receivers."""
    loop = asyncio.new_event_loop()
    try:

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: Any) -> None:
            return None

        scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
        wrapped_asgi = asgi.SignalsMiddleware(asgi_app)
        wrapped_wsgi = wsgi.SignalsMiddleware(wsgi_app)
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/"}

        def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            return None

        def wsgi_call(app: Any) -> Callable[[], None]:
            def call() -> None:
                body = app(environ, start_response)
                for _ in body:
                    pass
                close = getattr(body, "close", None)
                if close is not None:
                    close()

            return call

        namespace = {"scope": scope, "receive": receive, "send": send}
        return measure(
            {
                "asgi plain": async_statement_batch(
                    "await app(scope, receive, send)", {**namespace, "app": asgi_app}, loop=loop
                ),
                "asgi wrapped": async_statement_batch(
                    "await app(scope, receive, send)",
                    {**namespace, "app": wrapped_asgi},
                    loop=loop,
                ),
                "wsgi plain": callable_batch(wsgi_call(wsgi_app)),
                "wsgi wrapped": callable_batch(wsgi_call(wrapped_wsgi)),
            },
            settings=settings,
        )
    finally:
        loop.close()


def _pct(value: float, base: float) -> str:
    return f"{(value / base - 1) * 100:+.1f}%"


def run(quick: bool = False) -> None:
    """Measure and print the table (about 30 s; ``quick``: a few seconds, rough numbers)."""
    # waitress warns whenever a request waits for a worker thread, which a busy shared machine
    # makes routine; it says nothing about the middleware.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    http_settings = (
        Settings(rounds=7, min_time=0.02, quick=True)
        if quick
        else Settings(rounds=21, min_time=0.04)
    )
    sink = _Sink()
    with ExitStack() as stack:
        ports = {
            ("uvicorn", "plain"): stack.enter_context(_uvicorn(asgi_app)),
            ("uvicorn", "wrapped"): stack.enter_context(_uvicorn(asgi.SignalsMiddleware(asgi_app))),
            ("waitress", "plain"): stack.enter_context(_waitress(wsgi_app)),
            ("waitress", "wrapped"): stack.enter_context(
                _waitress(wsgi.SignalsMiddleware(wsgi_app))
            ),
        }
        get = {key: _requester(port) for key, port in ports.items()}
        with CpuShare() as cpu:
            bare = measure({key: callable_batch(get[key]) for key in get}, settings=http_settings)
            results: dict[tuple[str, str], Timing] = {}
            for server, asynchronous in (("uvicorn", True), ("waitress", False)):
                disconnect = _connect(sink, asynchronous=asynchronous)
                try:
                    _check_receivers(sink, get[(server, "wrapped")], server)
                    pair = {
                        (server, "plain"): callable_batch(get[(server, "plain")]),
                        (server, "receivers"): callable_batch(get[(server, "wrapped")]),
                    }
                    results |= measure(pair, settings=http_settings)
                finally:
                    disconnect()
        direct = _direct_overhead(Settings.for_mode(quick=quick))

    print(f"env: {environment(['uvicorn', 'waitress'])}")
    print("µs per GET / over loopback (best round; keep-alive http.client; one process)")
    header = (
        f"{'server (bare app)':<18}{'plain':>9}{'middleware':>12}{'overhead':>10}"
        f"{'  │ plain':>10}{'+3 receivers':>14}{'overhead':>10}"
    )
    print(header)
    print("-" * len(header))
    for server, label, kind in (
        ("uvicorn", "uvicorn (ASGI)", "async"),
        ("waitress", "waitress (WSGI)", "sync"),
    ):
        plain = bare[(server, "plain")].best / 1000
        wrapped = bare[(server, "wrapped")].best / 1000
        plain2 = results[(server, "plain")].best / 1000
        loaded = results[(server, "receivers")].best / 1000
        print(
            f"{label:<18}{plain:>9.1f}{wrapped:>12.1f}{_pct(wrapped, plain):>10}"
            f"{'  │ ':>4}{plain2:>6.1f}{loaded:>14.1f}{_pct(loaded, plain2):>10}"
            f"   ({kind} receivers)"
        )
    print()
    print("middleware's own cost per request, no receiver connected (in-process, best round)")
    for server, proto in (("uvicorn", "asgi"), ("waitress", "wsgi")):
        plain_ns = direct[f"{proto} plain"].best
        wrapped_ns = direct[f"{proto} wrapped"].best
        extra = wrapped_ns - plain_ns
        # The fastest plain request of the run: the smallest denominator, the largest share.
        request_ns = min(bare[(server, "plain")].best, results[(server, "plain")].best)
        print(
            f"  {proto.upper()}: app {plain_ns:,.0f} ns, wrapped {wrapped_ns:,.0f} ns: "
            f"+{extra:,.0f} ns = {extra / request_ns:.2%} of a {request_ns / 1000:.0f} µs "
            f"{server} request (budget: 2%)"
        )
    noise = max(t.spread for t in (*bare.values(), *results.values()))
    print(f"noise: median round up to {noise:.0%} above the best; {cpu.describe()}")


if __name__ == "__main__":  # pragma: no cover
    run()
