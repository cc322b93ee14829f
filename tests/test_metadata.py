"""The installed package's metadata is the one source of the version."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

import tidings


def test_version_is_the_installed_metadata_version() -> None:
    """tidings.__version__ is what the installed distribution says, as pyproject wrote it."""
    assert tidings.__version__ == importlib.metadata.version("tidings")


def test_reading_the_version_is_lazy() -> None:
    """import tidings does not load importlib.metadata; asking for __version__ does."""
    code = (
        "import sys, tidings; before = 'importlib.metadata' in sys.modules; "
        "version = tidings.__version__; print(before, 'importlib.metadata' in sys.modules)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.split() == ["False", "True"]


def test_unknown_attributes_still_raise_attribute_error() -> None:
    """The module's lazy attribute hook answers only __version__."""
    with pytest.raises(AttributeError, match="module 'tidings' has no attribute 'nope'"):
        tidings.nope  # noqa: B018
