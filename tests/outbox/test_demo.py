"""The durable demo (``make demo``): a killed worker, a second one, no user without a mail."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[2] / "examples" / "durable" / "demo.py"


@pytest.mark.fault
def test_the_demo_welcomes_every_user_despite_the_killed_worker() -> None:
    """The demo kills its first worker and still reports every user welcomed."""
    done = subprocess.run(
        [sys.executable, str(DEMO)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^worker 1 sent \d+ mails, then was killed with SIGKILL$", done.stdout, re.M)
    assert "users: 30, welcomed: 30, not welcomed: 0" in done.stdout
