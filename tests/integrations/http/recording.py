"""A recorder of request signals and of what the test apps did, in one ordered timeline."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from tidings import Signal
from tidings.http import Request, got_request_exception, request_finished, request_started

# Set by the test apps at the start of every request (from ``?id=``), so that request_finished,
# which carries no arguments, can be paired with its request through the request's context.
REQUEST_ID: ContextVar[str | None] = ContextVar("tidings_test_request_id", default=None)

WAIT = 10.0


@dataclass(frozen=True)
class Event:
    """One thing that happened: a signal received, or a step an app took."""

    kind: str
    rid: str | None
    data: Mapping[str, Any] = field(default_factory=dict)


def query_id(query_string: str | bytes) -> str | None:
    """The ``id`` query parameter of a request, if any."""
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    values = parse_qs(query_string).get("id")
    return values[0] if values else None


class Recorder:
    """Receivers for the three request signals that append to a shared timeline."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._cond = threading.Condition()

    # -- timeline ---------------------------------------------------------------------------

    def note(self, kind: str, rid: str | None, **data: Any) -> None:
        """Append an event and wake up waiters."""
        with self._cond:
            self._events.append(Event(kind, rid, data))
            self._cond.notify_all()

    def events(self, rid: str | None = None, *, signals_only: bool = False) -> list[Event]:
        """The events so far, optionally of one request, optionally only the signals."""
        with self._cond:
            events = list(self._events)
        if rid is not None:
            events = [e for e in events if e.rid == rid]
        if signals_only:
            events = [e for e in events if e.kind in ("started", "exception", "finished")]
        return events

    def kinds(self, rid: str | None, *, signals_only: bool = True) -> list[str]:
        """The kinds of the events of one request, in order."""
        return [e.kind for e in self.events(rid, signals_only=signals_only)]

    def wait_for(self, condition: Callable[[], bool], timeout: float = WAIT) -> None:
        """Block until ``condition()`` holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; events so far: {self._events}")
                self._cond.wait(left)

    def wait_finished(self, rid: str, timeout: float = WAIT) -> None:
        """Block until request ``rid`` got its request_finished."""
        self.wait_for(lambda: any(e.kind == "finished" and e.rid == rid for e in self._events))

    # -- receivers --------------------------------------------------------------------------

    def on_started(self, sender: Any, **kwargs: Any) -> None:
        """Record request_started with the request's id from its scope or environ."""
        if "scope" in kwargs:
            rid = query_id(kwargs["scope"].get("query_string", b""))
        else:
            rid = query_id(kwargs["environ"].get("QUERY_STRING", ""))
        self.note("started", rid, sender=sender, keys=_keys(kwargs), thread=_thread())

    def on_exception(self, sender: Any, **kwargs: Any) -> None:
        """Record got_request_exception with its request object and exception."""
        request: Request = kwargs["request"]
        self.note(
            "exception",
            query_id(request.query_string),
            sender=sender,
            keys=_keys(kwargs),
            request=request,
            exception=kwargs.get("exception"),
        )

    def on_finished(self, sender: Any, **kwargs: Any) -> None:
        """Record request_finished, paired through the request's context."""
        self.note("finished", REQUEST_ID.get(), sender=sender, keys=_keys(kwargs))

    async def aon_started(self, sender: Any, **kwargs: Any) -> None:
        """Async twin of :meth:`on_started`, yielding to the loop first."""
        await asyncio.sleep(0.01)
        self.on_started(sender, **kwargs)

    async def aon_exception(self, sender: Any, **kwargs: Any) -> None:
        """Async twin of :meth:`on_exception`."""
        await asyncio.sleep(0)
        self.on_exception(sender, **kwargs)

    async def aon_finished(self, sender: Any, **kwargs: Any) -> None:
        """Async twin of :meth:`on_finished`."""
        await asyncio.sleep(0)
        self.on_finished(sender, **kwargs)

    def connect(self, *, asynchronous: bool = False) -> None:
        """Connect the sync (or the async) receivers to the three signals, for any sender."""
        pairs: list[tuple[Signal, Callable[..., Any]]]
        if asynchronous:
            pairs = [
                (request_started, self.aon_started),
                (got_request_exception, self.aon_exception),
                (request_finished, self.aon_finished),
            ]
        else:
            pairs = [
                (request_started, self.on_started),
                (got_request_exception, self.on_exception),
                (request_finished, self.on_finished),
            ]
        for signal, receiver in pairs:
            signal.connect(receiver, weak=False)
        self._connected = pairs

    def disconnect(self) -> None:
        """Disconnect what :meth:`connect` connected."""
        for signal, receiver in getattr(self, "_connected", []):
            signal.disconnect(receiver)


def _keys(kwargs: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(k for k in kwargs if k != "signal"))


def _thread() -> str:
    return threading.current_thread().name


CURRENT: list[Recorder] = []


def note(kind: str, rid: str | None, **data: Any) -> None:
    """Record an app step on the active recorder, if a test installed one."""
    if CURRENT:
        CURRENT[-1].note(kind, rid, **data)


def _broken(sender: Any, **kwargs: Any) -> None:
    raise RuntimeError("receiver bug")


@contextmanager
def failing_then_recording(signal: Signal) -> Iterator[Recorder]:
    """Connect a receiver raising ``RuntimeError("receiver bug")``, then a recorder after it.

    Yields the recorder, whose ``finished`` events show whether receivers after a failing one
    still ran (only its ``on_finished`` is connected).
    """
    later = Recorder()
    signal.connect(_broken, weak=False)
    signal.connect(later.on_finished, weak=False)
    try:
        yield later
    finally:
        signal.disconnect(_broken)
        signal.disconnect(later.on_finished)
