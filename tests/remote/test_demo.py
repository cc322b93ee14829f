"""The remote demo (``make demo``, ``make demo-redis``): who ran which queue and broadcast call."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.transport.conftest import REDIS_URL, redis_or_skip

DEMO = Path(__file__).resolve().parents[2] / "examples" / "remote" / "demo.py"


def run_demo(*args: str) -> str:
    """Run the demo to its end; return what it printed."""
    done = subprocess.run(
        [sys.executable, str(DEMO), *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def check(output: str) -> None:
    """Both workers sent mails, disjoint and complete; both nodes refreshed for all users."""
    mails = re.findall(r"^  (worker-\d): users \[(.*)\]$", output, re.M)
    assert len(mails) == 4
    sent = [set(map(int, users.split(", "))) if users else set() for _, users in mails[:2]]
    assert not sent[0] & sent[1]
    assert sent[0] | sent[1] == set(range(1, 9))
    assert [users for _, users in mails[2:]] == ["1, 2, 3, 4, 5, 6, 7, 8"] * 2
    assert "every user welcomed exactly once: True; every node refreshed for every user: True" in (
        output
    )


def test_the_demo_on_the_in_memory_transport() -> None:
    """Without a server, two worker threads split the mails and both refresh for every user."""
    output = run_demo()
    assert "consume from the in-memory transport" in output
    check(output)


@pytest.mark.redis
def test_the_demo_on_redis_with_two_worker_processes() -> None:
    """``--redis``: two worker processes split the mails and both refresh for every user."""
    redis_or_skip()
    output = run_demo("--redis", REDIS_URL)
    assert "two worker processes consume from Redis" in output
    check(output)
