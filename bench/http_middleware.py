"""Request-signal middleware overhead: real HTTP requests over loopback, side by side.

A minimal bare ASGI app on uvicorn and a minimal bare WSGI app on waitress are each served in
this process on a free loopback port, at two paths: ``/`` calls the app directly, ``/wrapped``
calls it through tidings' ``SignalsMiddleware``. One keep-alive ``http.client`` connection per
server sends bounded loops of ``GET`` requests, in paired rounds: a batch to each path, in a
random order, round after round; the overhead is the median of the per-round ratios. This is
done with no receiver connected, then with a no-op receiver on each of the three signals.

Serving both paths from one server over one connection leaves the middleware as the only
difference (two server instances differ by a few percent on their own; the same paths served
without the middleware measure +0.0%). Single rounds still jitter by several percent, hence the
median over many rounds and the interquartile range printed next to it.

The table ends with the middleware's cost timed in-process (the wrapped app called in a warm
loop against the plain one): a lower bound, since inside a real server the middleware's code
and data are colder than in a tight loop.
"""

from __future__ import annotations

import asyncio
import gc
import http.client
import logging
import random
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bench._timing import (
    CpuShare,
    Settings,
    Timing,
    async_statement_batch,
    callable_batch,
    environment,
    measure,
)
from tests.integrations.http.servers import serve_asgi, serve_wsgi
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


def _requester(connection: http.client.HTTPConnection, path: str) -> Callable[[], None]:
    port = connection.port

    def get() -> None:
        connection.request("GET", path)
        response = connection.getresponse()
        if response.read() != b"ok":  # pragma: no cover - a broken contender
            raise RuntimeError(f"unexpected response {response.status} from port {port}")

    return get


def _routed_asgi(wrapped: Any) -> Any:
    """One server for both contenders: ``/wrapped`` goes through the middleware, ``/`` not.

    Serving both from the same server over the same connection leaves the middleware as the
    only difference between them: two server instances differ by a few percent on their own.
    """

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/wrapped":
            await wrapped(scope, receive, send)
        else:
            await asgi_app(scope, receive, send)

    return app


def _routed_wsgi(wrapped: Any) -> Any:
    """The WSGI twin of :func:`_routed_asgi`."""

    def app(environ: Any, start_response: Any) -> Any:
        if environ["PATH_INFO"] == "/wrapped":
            return wrapped(environ, start_response)
        return wsgi_app(environ, start_response)

    return app


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


@dataclass
class _Pair:
    """Paired rounds of two contenders: µs per request of each, and their ratio, per round."""

    plain: list[float] = field(default_factory=list)
    other: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)

    def overhead(self) -> str:
        """The median per-round overhead, with its interquartile range."""
        low, mid, high = statistics.quantiles(self.ratios, n=4)
        return f"{(mid - 1) * 100:+.1f}% ({(low - 1) * 100:+.1f}…{(high - 1) * 100:+.1f})"


def _paired(
    plain: Callable[[], None], other: Callable[[], None], *, rounds: int, batch: int
) -> _Pair:
    """Time ``batch`` requests of each contender back to back, in a random order, per round.

    Pairing cancels the slow drifts of a shared machine (another process starting, the CPU
    clocking down): each round's ratio compares two batches taken a few milliseconds apart,
    and the median ratio ignores the rounds a burst of load spoiled.
    """
    pair = _Pair()
    rng = random.Random(20260)
    for _ in range(batch * 5):  # warm both up: connections, caches, lazily built state
        plain()
        other()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            times = {}
            for name in rng.sample(("plain", "other"), 2):
                get = plain if name == "plain" else other
                start = time.perf_counter()
                for _ in range(batch):
                    get()
                times[name] = (time.perf_counter() - start) / batch * 1e6
            pair.plain.append(times["plain"])
            pair.other.append(times["other"])
            pair.ratios.append(times["other"] / times["plain"])
    finally:
        if enabled:
            gc.enable()
    return pair


def run(quick: bool = False) -> None:
    """Measure and print the table (about 20 s; ``quick``: a few seconds, rough numbers)."""
    # waitress warns whenever a request waits for a worker thread, which a busy shared machine
    # makes routine; it says nothing about the middleware.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    rounds, batch = (100, 5) if quick else (1000, 5)
    sink = _Sink()
    pairs: dict[tuple[str, str], _Pair] = {}
    with ExitStack() as stack:
        urls = {
            "uvicorn": stack.enter_context(
                serve_asgi(_routed_asgi(asgi.SignalsMiddleware(asgi_app)))
            ),
            "waitress": stack.enter_context(
                serve_wsgi(_routed_wsgi(wsgi.SignalsMiddleware(wsgi_app)), threads=2)
            ),
        }
        get = {}
        for server, url in urls.items():
            connection = http.client.HTTPConnection(urlsplit(url).netloc, timeout=10)
            stack.callback(connection.close)
            get[(server, "plain")] = _requester(connection, "/")
            get[(server, "wrapped")] = _requester(connection, "/wrapped")
        with CpuShare() as cpu:
            for server, asynchronous in (("uvicorn", True), ("waitress", False)):
                plain, wrapped = get[(server, "plain")], get[(server, "wrapped")]
                pairs[(server, "bare")] = _paired(plain, wrapped, rounds=rounds, batch=batch)
                disconnect = _connect(sink, asynchronous=asynchronous)
                try:
                    _check_receivers(sink, wrapped, server)
                    pairs[(server, "receivers")] = _paired(
                        plain, wrapped, rounds=rounds, batch=batch
                    )
                finally:
                    disconnect()
        direct = _direct_overhead(Settings.for_mode(quick=quick))

    print(f"env: {environment(['uvicorn', 'waitress'])}")
    print(
        f"µs per GET / over loopback, keep-alive http.client, one process: best of {rounds} "
        f"paired rounds of {batch} requests;"
    )
    print("overhead: median of the per-round ratios to the plain app (interquartile range)")
    header = (
        f"{'server (bare app)':<17}{'plain':>7}{'middleware':>12}{'overhead':>22}"
        f"{'  │':>3}{'plain':>7}{'+3 receivers':>14}{'overhead':>22}"
    )
    print(header)
    print("-" * len(header))
    for server, label, kind in (
        ("uvicorn", "uvicorn (ASGI)", "async"),
        ("waitress", "waitress (WSGI)", "sync"),
    ):
        bare, loaded = pairs[(server, "bare")], pairs[(server, "receivers")]
        print(
            f"{label:<17}{min(bare.plain):>7.1f}{min(bare.other):>12.1f}{bare.overhead():>22}"
            f"{'  │':>3}{min(loaded.plain):>7.1f}{min(loaded.other):>14.1f}"
            f"{loaded.overhead():>22}   ({kind} receivers)"
        )
    print()
    print("middleware's cost per request in a warm in-process loop, no receiver (a lower bound)")
    for server, proto in (("uvicorn", "asgi"), ("waitress", "wsgi")):
        plain_ns = direct[f"{proto} plain"].best
        wrapped_ns = direct[f"{proto} wrapped"].best
        extra = wrapped_ns - plain_ns
        # The fastest plain request of the run: the smallest denominator, the largest share.
        request_ns = min(min(p.plain) for (s, _), p in pairs.items() if s == server) * 1000
        print(
            f"  {proto.upper()}: app {plain_ns:,.0f} ns, wrapped {wrapped_ns:,.0f} ns: "
            f"+{extra:,.0f} ns = {extra / request_ns:.2%} of a {request_ns / 1000:.0f} µs "
            f"{server} request (budget: 2%)"
        )
    print(cpu.describe())


if __name__ == "__main__":  # pragma: no cover
    run()
