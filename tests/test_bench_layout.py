"""The benchmark modules shadow no package they could import, so no path juggling is needed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


def test_no_bench_module_is_named_like_an_importable_module() -> None:
    """No ``bench/*.py`` has the name of a module importable from elsewhere (``http``, ...)."""
    names = sorted(p.stem for p in BENCH.glob("*.py"))
    assert "run" in names
    clashing = [name for name in names if importlib.util.find_spec(name) is not None]
    assert clashing == []


def test_the_runner_starts_as_a_module_from_the_root() -> None:
    """``python -m bench.run --help`` lists the sections, from the repository root."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--help"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    assert "core, http, sqlalchemy, outbox" in result.stdout
