"""``send_robust``: errors become responses, are logged, and never stop the other receivers.

Statement numbers (#n) refer to the numbered list in docs/semantics.md.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import pytest

from tests.core._support import Recorder, dispatch, names
from tidings import Signal


def test_success_returns_responses(sender: Any, weak: bool) -> None:
    """Without errors ``send_robust`` returns what ``send`` returns (#24)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"), sender=sender, weak=weak)
    signal.connect(rec.sync("b"), sender=sender, weak=weak)
    assert names(signal.send_robust(sender, x=1)) == [("a", "a-result"), ("b", "b-result")]
    assert rec.kwargs[0] == {"signal": signal, "sender": sender, "x": 1}


def test_ignored_sender_returns_empty(specific_sender: Any) -> None:
    """``send_robust`` from a sender nobody listens to returns ``[]`` (#24)."""
    rec, signal = Recorder(), Signal()
    signal.connect(rec.sync("a"), sender=specific_sender)
    assert signal.send_robust(object()) == []
    assert rec.calls == []


def test_error_becomes_response_with_traceback(
    sender: Any, weak: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing receiver's exception is its response, with a traceback; others still run (#24)."""
    rec, signal = Recorder(), Signal()
    error = ValueError("bad value")
    signal.connect(rec.sync("a"), sender=sender, weak=weak)
    signal.connect(rec.sync("failing", error=error), sender=sender, weak=weak)
    signal.connect(rec.sync("c"), sender=sender, weak=weak)
    with caplog.at_level(logging.ERROR, logger="tidings"):
        responses = signal.send_robust(sender)
    assert names(responses) == [("a", "a-result"), ("failing", error), ("c", "c-result")]
    assert error.__traceback__ is not None
    assert rec.calls == ["a", "failing", "c"]


def test_error_is_logged_like_django(caplog: pytest.LogCaptureFixture) -> None:
    """The failure is logged to ``tidings`` at ERROR with Django's message and exc_info (#25)."""
    rec, signal = Recorder(), Signal()
    error = ValueError("bad value")
    signal.connect(rec.sync("failing", error=error))
    with caplog.at_level(logging.ERROR, logger="tidings"):
        signal.send_robust(None)
    [record] = caplog.records
    assert record.name == "tidings"
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "Error calling failing in Signal.send_robust() (bad value)"
    assert record.exc_info is not None
    assert record.exc_info[1] is error


@pytest.mark.parametrize("kind", ["KeyboardInterrupt", "SystemExit", "GeneratorExit"])
def test_base_exceptions_propagate(kind: str) -> None:
    """Only ``Exception`` is caught: other ``BaseException`` subclasses propagate (#24)."""
    rec, signal = Recorder(), Signal()
    error_type = {"KeyboardInterrupt": KeyboardInterrupt, "SystemExit": SystemExit}.get(
        kind, GeneratorExit
    )
    signal.connect(rec.sync("failing", error=error_type()))
    signal.connect(rec.sync("after"))
    with pytest.raises(error_type):
        signal.send_robust(None)
    assert rec.calls == ["failing"]


class _FailingCallable:
    """A callable instance (no ``__qualname__``) that always fails."""

    def __call__(self, **kwargs: Any) -> None:
        raise RuntimeError("instance failed")

    def __repr__(self) -> str:
        return "<failing callable>"


def _fail(prefix: str, **kwargs: Any) -> None:
    """A function that fails, to be wrapped in a ``functools.partial``."""
    raise RuntimeError(f"{prefix} failed")


@pytest.mark.parametrize("kind", ["callable-instance", "partial"])
def test_failing_receiver_without_qualname(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """A failing receiver without ``__qualname__`` is logged by its repr (Django fails, #26)."""
    failing: Any = (
        _FailingCallable() if kind == "callable-instance" else functools.partial(_fail, "p")
    )
    rec, signal = Recorder(), Signal()
    signal.connect(failing)
    signal.connect(rec.sync("after"))
    with caplog.at_level(logging.ERROR, logger="tidings"):
        responses = signal.send_robust(None)
    assert responses[0][0] is failing
    assert isinstance(responses[0][1], RuntimeError)
    assert names(responses[1:]) == [("after", "after-result")]
    [record] = caplog.records
    assert record.getMessage().startswith(f"Error calling {failing!r} in Signal.send_robust() (")


def test_robust_snapshot_semantics(sender: Any) -> None:
    """``send_robust`` uses the same snapshot rules as ``send`` (#24, #19)."""
    rec, signal = Recorder(), Signal()
    victim, newcomer = rec.sync("victim"), rec.sync("newcomer")

    def churn(**kwargs: Any) -> None:
        rec.calls.append("churn")
        signal.disconnect(victim, sender=sender)
        signal.connect(newcomer, sender=sender)

    signal.connect(churn, sender=sender)
    signal.connect(victim, sender=sender)
    signal.send_robust(sender)
    assert rec.calls == ["churn", "victim"]


class _Unprintable:
    """An object whose ``repr()`` fails, like an ORM object detached from its session."""

    def __repr__(self) -> str:
        raise LookupError("repr needs a database session")


class _UnprintableError(ValueError):
    """An exception whose ``str()`` fails."""

    def __str__(self) -> str:
        raise LookupError("str needs a database session")


def _fail_with(target: object, error: Exception, **kwargs: Any) -> None:
    """A receiver body, wrapped in a partial, that fails with ``error``."""
    raise error


@pytest.mark.parametrize("method", ["send_robust", "asend_robust"])
@pytest.mark.parametrize("error", [ValueError("failed"), _UnprintableError()], ids=["str", "nostr"])
def test_describing_a_failing_receiver_never_fails_the_send(
    method: str, error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing receiver whose repr (or whose error's str) raises is still logged and returned."""
    rec, signal = Recorder(), Signal()
    failing = functools.partial(_fail_with, _Unprintable(), error)
    signal.connect(failing, weak=False)
    signal.connect(rec.sync("later"))
    with caplog.at_level(logging.ERROR, logger="tidings"):
        responses = dispatch(signal, method, None)
    assert responses[0] == (failing, error)
    assert names(responses[1:]) == [("later", "later-result")]
    [record] = caplog.records
    assert record.getMessage().startswith("Error calling <")
    assert "partial object at 0x" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[1] is error
