"""Real servers on free loopback ports, started in a thread and stopped at the end of a block;
and raw client sockets, for what an HTTP client library will not do (pipelining, hanging up)."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal
from urllib.parse import urlsplit

import uvicorn
from waitress import wasyncore
from waitress.server import create_server

START_TIMEOUT = 10.0


@contextmanager
def serve_asgi(app: Any, *, lifespan: Literal["auto", "on", "off"] = "off") -> Iterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1:<free port>; yield its base URL."""
    # proto=IPPROTO_TCP matters: asyncio enables TCP_NODELAY only on sockets that say TCP,
    # and without it every response waits out the client's delayed ACK (about 40 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan=lifespan, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        _wait(lambda: server.started or not thread.is_alive(), "uvicorn to start")
        if not server.started:
            raise RuntimeError("uvicorn failed to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT)
        sock.close()


@contextmanager
def serve_wsgi(app: Any, *, threads: int = 8) -> Iterator[str]:
    """Serve a WSGI app with waitress on 127.0.0.1:<free port>; yield its base URL."""
    server: Any = create_server(app, host="127.0.0.1", port=0, threads=threads)
    port = server.effective_port
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        # Closing the sockets from this thread would race the select() loop; let the loop
        # close them itself, then stop the worker threads.
        try:
            server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        except OSError:
            # A worker thread's own pull (after it wrote a response) can wake the loop between
            # the thunk being queued and this thread's write: the loop then ran the thunk and
            # closed the trigger before the write reached it. Anything else is a real error.
            if not server.trigger._closed:
                raise
        thread.join(START_TIMEOUT)
        server.task_dispatcher.shutdown()


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.005)


def connect(url: str) -> socket.socket:
    """Open a TCP connection to the server at ``url``, for requests written by hand."""
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"not a served URL: {url!r}")
    return socket.create_connection((parts.hostname, parts.port), timeout=START_TIMEOUT)


def request_bytes(url: str, target: str, *, close: bool = False) -> bytes:
    """An HTTP/1.1 GET of ``target`` for the server at ``url``, optionally ``Connection: close``."""
    host = urlsplit(url).netloc
    connection = "Connection: close\r\n" if close else ""
    return f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{connection}\r\n".encode()


def read_until(sock: socket.socket, marker: bytes) -> bytes | None:
    """Read until ``marker`` has arrived; ``None`` if the server closed the connection first."""
    received = b""
    while marker not in received:
        data = sock.recv(65536)
        if not data:
            return None
        received += data
    return received


def read_until_closed(sock: socket.socket) -> bytes:
    """Read everything the server sends until it closes (or resets) the connection."""
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while data := sock.recv(65536):
            received += data
    return received


def reset_on_close(sock: socket.socket) -> None:
    """Make ``close()`` reset the connection (linger 0), as a client that crashed would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
