"""Fixtures of the core dispatcher tests: sender kinds, reference strength."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.core._support import SENDER_KINDS, make_sender


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


@pytest.fixture
def switch_often() -> Iterator[None]:
    """Make the interpreter switch threads very often, so that races show up quickly."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
