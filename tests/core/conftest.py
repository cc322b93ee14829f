"""Fixtures of the core dispatcher tests: sender kinds, reference strength, the stress gate.

Tests marked ``stress`` are long race reproducers. They are skipped unless the marker is
selected explicitly (``pytest -m stress``), so a plain ``pytest`` run stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.core._support import SENDER_KINDS, make_sender


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``stress`` tests unless the ``-m`` expression asks for them."""
    if "stress" in (config.getoption("markexpr", "") or ""):
        return
    skip = pytest.mark.skip(reason="stress test: run with -m stress")
    here = Path(__file__).parent
    for item in items:
        # Only this folder's tests: other areas decide their own policy.
        if "stress" in item.keywords and here in item.path.parents:
            item.add_marker(skip)


@pytest.fixture(params=SENDER_KINDS)
def sender(request: pytest.FixtureRequest) -> Any:
    """A sender of every kind, ``None`` included, kept alive for the whole test."""
    return make_sender(request.param)


@pytest.fixture(params=[kind for kind in SENDER_KINDS if kind != "none"])
def specific_sender(request: pytest.FixtureRequest) -> Any:
    """A sender of every kind except ``None``, kept alive for the whole test."""
    return make_sender(request.param)


@pytest.fixture(params=[pytest.param(True, id="weak"), pytest.param(False, id="strong")])
def weak(request: pytest.FixtureRequest) -> bool:
    """Both reference strengths a receiver can be connected with."""
    return bool(request.param)
