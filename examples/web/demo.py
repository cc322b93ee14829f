"""Request signals in action: a small Starlette app on uvicorn, three requests, the log trace.

Run ``python examples/web/demo.py`` (or ``make demo``): it starts ``webapp.app`` on a free
loopback port in this process, sends a plain request, a streamed one and a failing one with a
real HTTP client, prints what the signal receivers logged, and stops the server.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from webapp import app

REQUESTS = [
    ("GET", "/hello?name=tidings"),
    ("GET", "/countdown"),
    ("GET", "/boom?retry=1"),
]


class _Finished(logging.Handler):
    """Wakes the demo up when a request's last log line (← or ✗…←) has been written."""

    def __init__(self) -> None:
        super().__init__()
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("←"):
            self.event.set()


def main() -> int:
    """Serve the app, send the requests, print the trace; return the exit status."""
    logging.basicConfig(level=logging.INFO, format="  server │ %(message)s", stream=sys.stdout)
    # The app's own receiver reports errors; uvicorn's traceback of the same error would only
    # repeat it at length in the middle of the trace.
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # After basicConfig's handler on the root logger, so a line is printed before it wakes us.
    finished = _Finished()
    logging.getLogger().addHandler(finished)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                print("uvicorn did not start", file=sys.stderr)
                return 1
            time.sleep(0.01)
        print(f"serving webapp.app on http://127.0.0.1:{port}\n")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as client:
            for method, path in REQUESTS:
                finished.event.clear()
                print(f"  client │ {method} {path}")
                response = client.request(method, path, headers={"User-Agent": "demo/1.0"})
                body = response.text.strip().replace("\n", " ")
                print(f"  client │ {response.status_code} {response.reason_phrase}: {body}")
                if not finished.event.wait(5):
                    print("request_finished never came", file=sys.stderr)
                    return 1
                print()
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    print("every request: request_started, then request_finished once; errors reported between")
    return 0


if __name__ == "__main__":
    sys.exit(main())
