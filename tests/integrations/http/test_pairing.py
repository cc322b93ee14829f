"""request_started/request_finished pairing under 50 concurrent requests with clients hanging up.

Every test app on its real server gets a burst of requests, 50 in flight at a time: a third
stream a body to the end, a third reset the connection after the first chunk, a third make the
app raise. Each request the middleware started must finish exactly once, after its last chunk
when it had one, and only failing requests may report an exception. The test reports counts
(requests, started, finished, duplicated, lost, orphaned, misordered, wrongly reported) and
compares them as a whole, so a failure shows every count at once. The short burst runs in the
suite; ``-m stress`` runs the long one.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .conftest import Served
from .recording import Recorder
from .servers import connect, read_until, request_bytes, reset_on_close

CONCURRENCY = 50
KINDS = ("complete", "hangup", "error")
SETTLE = 20.0  # seconds to wait for the last request_finished after the last client is done


def _complete(client: httpx.Client, url: str, rid: str) -> bool:
    response = client.get(f"{url}/stream?id={rid}&n=3&delay=0.005")
    return response.status_code == 200 and response.text == "chunk\n" * 3


def _error(client: httpx.Client, url: str, rid: str) -> bool:
    # Connection: close, because Starlette re-raises the error after sending its 500 and
    # uvicorn then closes the connection: a keep-alive client reusing it would be reset, with
    # or without tidings.
    response = client.get(f"{url}/error?id={rid}", headers={"Connection": "close"})
    return response.status_code == 500


def _hang_up(url: str, rid: str) -> bool:
    with connect(url) as sock:
        sock.sendall(request_bytes(url, f"/stream?id={rid}&n=200&delay=0.005"))
        if read_until(sock, b"chunk") is None:
            return False
        reset_on_close(sock)
    return True


def _burst(served: Served, recorder: Recorder, requests: int) -> dict[str, int]:
    """Send ``requests`` requests, 50 at a time; return the counts the test compares."""
    plan = [(f"p{i}", KINDS[i % len(KINDS)]) for i in range(requests)]
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    with httpx.Client(trust_env=False, timeout=20.0, limits=limits) as client:

        def one(rid: str, kind: str) -> bool:
            if kind == "complete":
                return _complete(client, served.url, rid)
            if kind == "error":
                return _error(client, served.url, rid)
            return _hang_up(served.url, rid)

        with ThreadPoolExecutor(CONCURRENCY) as pool:
            answered = list(pool.map(lambda job: one(*job), plan))

    ids = {rid for rid, _ in plan}
    deadline = time.monotonic() + SETTLE
    while time.monotonic() < deadline:
        finished = {e.rid for e in recorder.events(signals_only=True) if e.kind == "finished"}
        if ids <= finished:
            break
        time.sleep(0.02)
    return _counts(recorder, plan, answered)


def _counts(
    recorder: Recorder, plan: list[tuple[str, str]], answered: list[bool]
) -> dict[str, int]:
    kind_of = dict(plan)
    started: Counter[str] = Counter()
    finished: Counter[str] = Counter()
    misordered = wrongly_reported = 0
    by_request: dict[str, list[str]] = {}
    for event in recorder.events():
        if event.rid in kind_of:
            by_request.setdefault(event.rid, []).append(event.kind)
    for rid, kinds in by_request.items():
        started[rid] = kinds.count("started")
        finished[rid] = kinds.count("finished")
        if kinds.count("exception") != (kind_of[rid] == "error"):
            wrongly_reported += 1
        if "finished" in kinds and (
            kinds[0] != "started"
            or ("last_chunk" in kinds and kinds.index("finished") < kinds.index("last_chunk"))
        ):
            misordered += 1
    return {
        "requests": len(plan),
        "answered": sum(answered),
        "started": sum(1 for rid in kind_of if started[rid] >= 1),
        "finished": sum(1 for rid in kind_of if finished[rid] >= 1),
        "duplicated": sum(1 for rid in kind_of if started[rid] > 1 or finished[rid] > 1),
        "lost": sum(1 for rid in kind_of if started[rid] and not finished[rid]),
        "orphaned": sum(1 for rid in kind_of if finished[rid] and not started[rid]),
        "misordered": misordered,
        "wrongly_reported": wrongly_reported,
    }


def _expected(requests: int) -> dict[str, int]:
    return {
        "requests": requests,
        "answered": requests,
        "started": requests,
        "finished": requests,
        "duplicated": 0,
        "lost": 0,
        "orphaned": 0,
        "misordered": 0,
        "wrongly_reported": 0,
    }


def test_pairing_under_load_with_hang_ups(served: Served, recorder: Recorder) -> None:
    """100 requests, 50 in flight, a third hanging up: each started request finishes once."""
    assert _burst(served, recorder, 100) == _expected(100)


@pytest.mark.stress
def test_pairing_under_long_load_with_hang_ups(served: Served, recorder: Recorder) -> None:
    """2,000 requests, 50 in flight, a third hanging up: each started request finishes once."""
    assert _burst(served, recorder, 2000) == _expected(2000)
