"""The web demo runs from a clean interpreter and shows every request's signals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[3] / "examples" / "web" / "demo.py"


def test_demo_runs_and_traces_three_requests() -> None:
    """``examples/web/demo.py`` exits 0 after tracing start, finish and the error of requests."""
    done = subprocess.run(
        [sys.executable, str(DEMO)], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for path in ("/hello", "/countdown", "/boom"):
        assert f"→ GET {path}" in out
        assert out.count(f"← GET {path} finished") == 1
    assert "raised ZeroDivisionError" in out
    assert "500 Internal Server Error" in out
