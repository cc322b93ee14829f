"""The core's import boundary and public namespace."""

from __future__ import annotations
import __future__

import subprocess
import sys
import types

import tidings


def test_import_tidings_loads_only_the_standard_library() -> None:
    """``import tidings`` imports no third-party module."""
    code = (
        "import sys; before = set(sys.modules); import tidings; "
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    stdlib = sys.stdlib_module_names
    outside = [m for m in loaded if m.split(".")[0] not in stdlib and m.split(".")[0] != "tidings"]
    assert outside == []
    assert "tidings" in loaded


def test_all_is_sorted_and_complete() -> None:
    """``tidings.__all__`` is sorted and names every public attribute."""
    assert tidings.__all__ == sorted(tidings.__all__)
    public = {
        name
        for name, value in vars(tidings).items()
        if name.isidentifier()
        and not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and value is not __future__.annotations
    }
    assert set(tidings.__all__) == public
