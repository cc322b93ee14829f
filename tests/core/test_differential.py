"""Differential tests: tidings.Signal against django.dispatch.Signal as the oracle.

The oracle is the Django the test environment installs: 5.2 on Python < 3.12, 6.1 on newer
Pythons (Django 6 needs 3.12). Where Django 6.1 changed behaviour the machine compares more.

A Hypothesis state machine drives one Django signal and one tidings signal through the same
random operations (connect, disconnect, the four sends, ``has_listeners``, receiver death and
rebirth, receivers that connect, disconnect or kill other receivers during a send) and requires
the same observable results: who was called in which order, return values mapped to receiver
names, exception types, disconnect results, robust-send log messages, and, after every step
and for every sender, the receivers a send would reach (Django's private ``_live_receivers``
is the oracle for ``live_receivers``) and the number of connections once dead ones are purged.

Every receiver has a twin, one per signal, so that a receiver killing another during a send
kills only the twin of the signal being sent. Module-level functions are shared by both
signals (they never die); they tell the signals apart by the ``signal`` argument.

Known deviations are kept out of the machine and pinned by the ``test_deviation_*`` tests:
(a) Django 5.2 lets a new object that reuses a dead sender's ``id()`` inherit its receivers,
so senders never die here; (b) with ``use_caching=True`` Django raises ``TypeError`` for
senders that are not weakly referenceable or not hashable, so the caching machine sends only
from weakly referenceable senders, and Django's caching matches equal senders; (c) Django 5.2's
``asend`` runs the sync receivers concurrently with the async ones, tidings runs them first, so
for ``asend`` on 5.2 the sync calls and the async calls are compared separately, and while any
receiver fails ``asend_robust`` replaces ``asend`` (Django's failing ``asend`` cancels its sync
batch at a random point); Django 6.1 runs them as tidings does, so there everything is compared;
(d) Django fails on a
failing receiver without ``__qualname__`` and on unhashable senders, so callable instances here
never fail and lists are never sent in the plain machine; Django 5.2's ``asend`` loses context
variable changes of sync receivers, so every ``asend`` runs in a fresh context; (e) Django 6
drops a connection whose sender is a bound method (it references the temporary method object),
so on 6.x the bound-method sender is replaced by its object; (f) when several async receivers
fail in one send, Django 6.1 raises an ``ExceptionGroup`` and tidings the first of them (and
logs the others), so the machine compares the group's first exception.
"""

from __future__ import annotations

import asyncio
import builtins
import contextvars
import gc
import logging
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import django
import django.dispatch
import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import tidings
from tests.core._support import Thing

IMPLEMENTATIONS = ("django", "tidings")

# Receiver names by kind. Names starting with "a" are async receivers.
MODULE_NAMES = ("mod0", "mod1", "amod")
KILLABLE_NAMES = ("fn0", "fn1", "afn0", "afn1", "meth0", "meth1", "ameth", "call0")
ALL_NAMES = MODULE_NAMES + KILLABLE_NAMES
SYNC_NAMES = tuple(name for name in ALL_NAMES if not name.startswith("a"))
ASYNC_NAMES = tuple(name for name in ALL_NAMES if name.startswith("a"))
SENDER_COUNT = 9
UNHASHABLE_SENDER = 8
WEAKREFABLE_SENDERS = (1, 2, 3)
UIDS = (None, "", 0, "uid-1", "uid-2")
# Django 6.0 weakly references senders and runs asend's sync receivers before the async ones.
DJANGO_6 = django.VERSION >= (6, 0)
BOUND_METHOD_SENDER = 3
# What tidings logs, beyond Django, when several async receivers fail in one send (f).
EXTRA_FAILURE_LOG = "Another async receiver failed in the same send"


class ReceiverFailure(Exception):
    """Raised by receivers whose behaviour is ``fail``."""


class _Run:
    """The state one machine run shares with the receivers it created."""

    def __init__(self) -> None:
        self.calls: dict[str, list[str]] = {impl: [] for impl in IMPLEMENTATIONS}
        self.behaviour: dict[str, str] = dict.fromkeys(ALL_NAMES, "ok")
        self.objects: dict[str, dict[str, Any]] = {impl: {} for impl in IMPLEMENTATIONS}
        self.signals: dict[str, Any] = {}
        self.senders: list[Any] = []

    def impl_of(self, signal: Any) -> str:
        """Which implementation ``signal`` belongs to."""
        return "django" if isinstance(signal, django.dispatch.Signal) else "tidings"

    def sender(self, index: int) -> Any:
        """The sender at ``index`` (a bound method is fetched afresh, as callers do).

        Deviation (e): on Django 6 the bound-method sender is its object instead.
        """
        value = self.senders[index]
        return value.method if index == BOUND_METHOD_SENDER and not DJANGO_6 else value

    def receiver(self, impl: str, name: str) -> Any:
        """The live receiver named ``name`` for ``impl``, or ``None`` once it died."""
        if name in MODULE_NAMES:
            return _MODULE_RECEIVERS[name]
        obj = self.objects[impl].get(name)
        if obj is None:
            return None
        if name.startswith("meth"):
            return obj.handle
        if name == "ameth":
            return obj.ahandle
        return obj

    def act(self, signal: Any, name: str) -> str:
        """Log a call of ``name`` by ``signal``, carry out its behaviour, return its value."""
        impl = self.impl_of(signal)
        self.calls[impl].append(name)
        verb, _, rest = self.behaviour[name].partition(":")
        if verb == "fail":
            raise ReceiverFailure(name)
        if verb == "connect":
            target, sender, weak = rest.split(":")
            obj = self.receiver(impl, target)
            if obj is not None:
                signal.connect(obj, sender=self.sender(int(sender)), weak=weak == "weak")
        elif verb == "disconnect":
            target, sender = rest.split(":")
            obj = self.receiver(impl, target)
            if obj is not None:
                signal.disconnect(obj, sender=self.sender(int(sender)))
        elif verb == "kill":
            self.drop(impl, rest)
        return f"{name}-result"

    def drop(self, impl: str, name: str) -> None:
        """Drop ``impl``'s twin named ``name``; collect garbage if something still holds it.

        Reference counting frees a twin at once unless a strong connection (or a cycle) holds
        it; a full collection, which is slow in a big test process, is only run then.
        """
        obj = self.objects[impl].pop(name, None)
        if obj is None:
            return
        ref = weakref.ref(obj)
        del obj
        if ref() is not None:
            gc.collect()


_RUN = _Run()


def _module_receiver(name: str) -> Callable[..., Any]:
    """Build a named module-level receiver shared by both signals of every run."""
    if name.startswith("a"):

        async def async_receiver(signal: Any, **kwargs: Any) -> str:
            result = _RUN.act(signal, name)
            await asyncio.sleep(0)
            return result

        async_receiver.rname = name  # type: ignore[attr-defined]
        return async_receiver

    def sync_receiver(signal: Any, **kwargs: Any) -> str:
        return _RUN.act(signal, name)

    sync_receiver.rname = name  # type: ignore[attr-defined]
    return sync_receiver


_MODULE_RECEIVERS = {name: _module_receiver(name) for name in MODULE_NAMES}


class _Owner:
    """An object whose bound methods are receivers."""

    def __init__(self, run: _Run, name: str) -> None:
        self.run = run
        self.rname = name

    def handle(self, signal: Any, **kwargs: Any) -> str:
        """A sync method receiver."""
        return self.run.act(signal, self.rname)

    async def ahandle(self, signal: Any, **kwargs: Any) -> str:
        """An async method receiver."""
        result = self.run.act(signal, self.rname)
        await asyncio.sleep(0)
        return result


class _CallableReceiver:
    """A callable instance receiver (it has no ``__qualname__``)."""

    def __init__(self, run: _Run, name: str) -> None:
        self.run = run
        self.rname = name

    def __call__(self, signal: Any, **kwargs: Any) -> str:
        return self.run.act(signal, self.rname)


def _make_receiver(run: _Run, name: str) -> Any:
    """A new killable receiver object named ``name``."""
    if name.startswith("meth") or name == "ameth":
        return _Owner(run, name)
    if name.startswith("call"):
        return _CallableReceiver(run, name)
    if name.startswith("a"):

        async def async_closure(signal: Any, **kwargs: Any) -> str:
            result = run.act(signal, name)
            await asyncio.sleep(0)
            return result

        async_closure.rname = name  # type: ignore[attr-defined]
        return async_closure

    def closure(signal: Any, **kwargs: Any) -> str:
        return run.act(signal, name)

    closure.rname = name  # type: ignore[attr-defined]
    return closure


def _rname(receiver: Any) -> str:
    owner = getattr(receiver, "__self__", None)
    return str(owner.rname if isinstance(owner, _Owner) else receiver.rname)


def _first_of_group(error: Exception) -> Exception:
    """The first exception of Django 6.1's ``ExceptionGroup`` (deviation f), else ``error``."""
    group = getattr(builtins, "BaseExceptionGroup", None)  # Python 3.11+
    while group is not None and isinstance(error, group):
        first = error.exceptions[0]
        error.__traceback__ = None
        error = first
    return error


def _normalize(value: Any) -> Any:
    if isinstance(value, BaseException):
        # The traceback's frames hold receivers in a cycle; free them now.
        value.__traceback__ = None
        return ("raised", type(value).__name__, str(value))
    return value


class _LogCollector(logging.Filter):
    """Takes the robust-send failure logs of both implementations, keeping only the messages.

    As a logger filter it swallows the records: kept by pytest's log capture, their tracebacks
    would keep receivers alive that the machine expects dead.
    """

    def __init__(self) -> None:
        super().__init__()
        self.messages: dict[str, list[str]] = {impl: [] for impl in IMPLEMENTATIONS}

    def filter(self, record: logging.LogRecord) -> bool:
        impl = "django" if record.name.startswith("django") else "tidings"
        self.messages[impl].append(record.getMessage())
        return False


@pytest.fixture(autouse=True)
def _collect_logs() -> Iterator[None]:
    """Take both libraries' error logs for the machine; keep garbage collection cheap."""
    collector = _LogCollector()
    loggers = [logging.getLogger("django.dispatch"), logging.getLogger("tidings")]
    for lg in loggers:
        lg.addFilter(collector)
    _LOGS.append(collector)
    # Receiver death calls gc.collect() often; freezing what exists keeps each call cheap.
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        _LOGS.pop()
        for lg in loggers:
            lg.removeFilter(collector)


_LOGS: list[_LogCollector] = []

names_st = st.sampled_from(ALL_NAMES)
killable_st = st.sampled_from(KILLABLE_NAMES)
senders_st = st.integers(0, SENDER_COUNT - 1)
# Half of the connections are for any sender, so that sends reach several receivers.
connect_senders_st = st.one_of(st.just(0), senders_st)
uids_st = st.sampled_from(UIDS)
sync_behaviours_st = st.one_of(
    st.just("ok"),
    st.just("fail"),
    st.builds(
        "connect:{}:{}:{}".format,
        names_st,
        connect_senders_st,
        st.sampled_from(("weak", "strong")),
    ),
    st.builds("disconnect:{}:{}".format, names_st, connect_senders_st),
    st.builds("kill:{}".format, killable_st),
)


class DispatchComparison(RuleBasedStateMachine):
    """Random operation sequences on a Django signal and a tidings signal, compared."""

    use_caching = False

    def __init__(self) -> None:
        super().__init__()
        global _RUN
        _RUN = _Run()
        self.run = _RUN
        self.signals = {
            "django": django.dispatch.Signal(use_caching=self.use_caching),
            "tidings": tidings.Signal(use_caching=self.use_caching),
        }
        self.log = _LOGS[-1] if _LOGS else _LogCollector()
        equal_a = tuple(range(2))
        equal_b = tuple(range(2))
        self.run.senders = [
            None,
            type("SenderClass", (), {}),
            Thing(),
            Thing(),  # BOUND_METHOD_SENDER: its bound method ``.method`` is the sender
            object(),
            int("424242"),
            equal_a,
            equal_b,
            [1, 2],
        ]

    # -- helpers -----------------------------------------------------------------------------

    def sendable(self, index: int) -> bool:
        """Whether Django 5.2 can send from the sender at ``index`` in this machine."""
        if self.use_caching:
            return index in WEAKREFABLE_SENDERS
        return index != UNHASHABLE_SENDER

    def both(self, operation: Callable[[str, Any], Any]) -> tuple[Any, Any]:
        """Apply ``operation(impl, signal)`` to Django, then to tidings; return both outcomes."""
        outcomes: list[tuple[str, ...]] = []
        for impl in IMPLEMENTATIONS:
            self.run.calls[impl].clear()
            self.log.messages[impl].clear()
            try:
                outcomes.append(("ok", operation(impl, self.signals[impl])))
            except Exception as error:
                error = _first_of_group(error)
                # Receivers' own failures are compared by name, anything else by type.
                detail = str(error) if isinstance(error, ReceiverFailure) else ""
                outcomes.append(("raised", type(error).__name__, detail))
                # The traceback's frames hold receivers in a cycle; free them now.
                error.__traceback__ = None
        return outcomes[0], outcomes[1]

    def note_coverage(self, method: str) -> None:
        """Report what a send exercised (see ``pytest --hypothesis-show-statistics``)."""
        calls = self.run.calls["tidings"]
        event(f"{method} called {min(len(calls), 3)}{'+' if len(calls) >= 3 else ''} receivers")
        verbs = {self.run.behaviour[name].partition(":")[0] for name in calls}
        for verb in sorted(verbs - {"ok"}):
            event(f"{method} ran a receiver that does {verb!r}")

    # -- rules -------------------------------------------------------------------------------

    @initialize(
        connections=st.lists(
            st.tuples(names_st, connect_senders_st, st.booleans(), uids_st), max_size=8
        ),
        behaviours=st.dictionaries(st.sampled_from(SYNC_NAMES), sync_behaviours_st, max_size=4),
    )
    def start(self, connections: list[tuple[str, int, bool, Any]], behaviours: Any) -> None:
        """Create the twins of every killable receiver, some connections and behaviours."""
        for impl in IMPLEMENTATIONS:
            for name in KILLABLE_NAMES:
                self.run.objects[impl][name] = _make_receiver(self.run, name)
        for name, sender, weak, uid in connections:
            self.connect(name, sender, weak, uid)
        for name, behaviour in behaviours.items():
            self.set_sync_behaviour(name, behaviour)

    @rule(name=names_st, sender=connect_senders_st, weak=st.booleans(), uid=uids_st)
    def connect(self, name: str, sender: int, weak: bool, uid: Any) -> None:
        """Connect a receiver for a sender on both signals."""
        if self.run.receiver("django", name) is None:
            return

        def operation(impl: str, signal: Any) -> None:
            receiver = self.run.receiver(impl, name)
            signal.connect(receiver, sender=self.run.sender(sender), weak=weak, dispatch_uid=uid)

        assert self.both(operation) == (("ok", None), ("ok", None))

    @rule(
        name=st.one_of(st.none(), names_st),
        sender=senders_st,
        uid=uids_st,
    )
    def disconnect(self, name: str | None, sender: int, uid: Any) -> None:
        """Disconnect by receiver or uid on both signals; the results must agree."""

        def operation(impl: str, signal: Any) -> bool:
            receiver = None if name is None else self.run.receiver(impl, name)
            result: bool = signal.disconnect(
                receiver, sender=self.run.sender(sender), dispatch_uid=uid
            )
            return result

        django_outcome, tidings_outcome = self.both(operation)
        event(f"disconnect returned {tidings_outcome[-1]}")
        assert django_outcome == tidings_outcome

    @rule(choice=st.integers(0, 63))
    def disconnect_connected(self, choice: int) -> None:
        """Disconnect one of the live connections, the way it was connected."""
        infos = self.signals["tidings"].live_receivers()
        if not infos:
            return
        info = infos[choice % len(infos)]
        index = next(
            i
            for i in range(SENDER_COUNT)
            if self.run.sender(i) is info.sender
            or (i == BOUND_METHOD_SENDER and self.run.sender(i) == info.sender)
        )
        self.disconnect(_rname(info.receiver), index, info.dispatch_uid)

    @rule(sender=senders_st, method=st.sampled_from(("send", "send_robust")), value=st.integers())
    def send(self, sender: int, method: str, value: int) -> None:
        """Send synchronously; calls, results, errors and logs must agree exactly."""
        if not self.sendable(sender):
            return

        def operation(impl: str, signal: Any) -> list[Any]:
            responses = getattr(signal, method)(self.run.sender(sender), value=value)
            return [(_rname(r), _normalize(v)) for r, v in responses]

        django_outcome, tidings_outcome = self.both(operation)
        self.note_coverage(method)
        assert django_outcome == tidings_outcome
        assert self.run.calls["django"] == self.run.calls["tidings"]
        tidings_logs = [m for m in self.log.messages["tidings"] if EXTRA_FAILURE_LOG not in m]
        assert self.log.messages["django"] == tidings_logs

    @rule(sender=senders_st, method=st.sampled_from(("asend", "asend_robust")))
    def asend(self, sender: int, method: str) -> None:
        """Send asynchronously; on Django 5.2 sync and async calls are compared separately (c)."""
        if not self.sendable(sender):
            return
        if not DJANGO_6 and method == "asend" and "fail" in self.run.behaviour.values():
            # Deviation (c): when a receiver fails, Django 5.2's asend cancels its sync batch
            # at a random point (it may even run on after asend returned), so only the robust
            # variant, which never cancels, can be compared.
            method = "asend_robust"

        def operation(impl: str, signal: Any) -> list[Any]:
            coroutine = getattr(signal, method)(self.run.sender(sender))
            # A fresh context: Django 5.2 and tidings differ on context propagation.
            responses = contextvars.Context().run(asyncio.run, coroutine)
            return [(_rname(r), _normalize(v)) for r, v in responses]

        django_outcome, tidings_outcome = self.both(operation)
        self.note_coverage(method)

        def split(calls: list[str]) -> tuple[list[str], list[str]]:
            return [c for c in calls if c in SYNC_NAMES], [c for c in calls if c in ASYNC_NAMES]

        if DJANGO_6:
            assert self.run.calls["django"] == self.run.calls["tidings"]
        else:
            assert split(self.run.calls["django"]) == split(self.run.calls["tidings"])
        assert django_outcome == tidings_outcome
        tidings_logs = [m for m in self.log.messages["tidings"] if EXTRA_FAILURE_LOG not in m]
        assert sorted(self.log.messages["django"]) == sorted(tidings_logs)

    @rule(sender=senders_st)
    def has_listeners(self, sender: int) -> None:
        """``has_listeners`` agrees for every sender."""
        if not self.sendable(sender):
            return
        outcomes = self.both(lambda impl, signal: signal.has_listeners(self.run.sender(sender)))
        assert outcomes[0] == outcomes[1]

    @rule(name=killable_st)
    def kill(self, name: str) -> None:
        """Drop both twins of a receiver and collect garbage."""
        for impl in IMPLEMENTATIONS:
            self.run.drop(impl, name)

    @rule(name=killable_st)
    def revive(self, name: str) -> None:
        """Give a dead receiver name new twins (new objects, new identities)."""
        if self.run.receiver("django", name) is not None:
            return
        for impl in IMPLEMENTATIONS:
            self.run.objects[impl][name] = _make_receiver(self.run, name)

    @rule(
        name=st.sampled_from(SYNC_NAMES),
        behaviour=sync_behaviours_st,
    )
    def set_sync_behaviour(self, name: str, behaviour: str) -> None:
        """Make a sync receiver fail, connect, disconnect or kill a receiver when called."""
        if name.startswith("call") and behaviour == "fail":
            behaviour = "ok"  # deviation (d): Django cannot log receivers without __qualname__
        self.run.behaviour[name] = behaviour

    @rule(name=st.sampled_from(ASYNC_NAMES), fail=st.booleans())
    def set_async_behaviour(self, name: str, fail: bool) -> None:
        """Make an async receiver fail or succeed."""
        self.run.behaviour[name] = "fail" if fail else "ok"

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def same_connections(self) -> None:
        """Both signals reach the same receivers, in the same order, for every sender.

        Django's private ``_live_receivers`` is the oracle for tidings' ``live_receivers``;
        both also hold as many connections once dead ones are purged.
        """
        django_signal, tidings_signal = self.signals["django"], self.signals["tidings"]
        for index in range(SENDER_COUNT):
            if self.sendable(index):
                sender = self.run.sender(index)
                assert django_signal.has_listeners(sender) == tidings_signal.has_listeners(sender)
                sync, asynchronous = django_signal._live_receivers(sender)
                expected = [_rname(r) for r in (*sync, *asynchronous)]
                got = [_rname(info.receiver) for info in tidings_signal.live_receivers(sender)]
                assert got == expected
        assert len(django_signal.receivers) == len(tidings_signal.receivers)

    @rule(method=st.sampled_from(("send", "send_robust")))
    def send_from_every_sender(self, method: str) -> None:
        """Send from every sender in turn, so that every sender's plan is exercised."""
        for index in range(SENDER_COUNT):
            if self.sendable(index):
                self.send(index, method, index)


class CachingDispatchComparison(DispatchComparison):
    """The same comparison with ``use_caching=True`` on both signals."""

    use_caching = True


# The machines kill receivers on purpose, often before any send reached them.
IGNORE_UNCALLED = pytest.mark.filterwarnings("ignore::tidings.UncalledReceiverWarning")


@IGNORE_UNCALLED
class TestDispatchComparison(DispatchComparison.TestCase):  # type: ignore[misc,valid-type]
    """tidings and Django agree on random operation sequences without caching."""

    settings = settings(max_examples=200, stateful_step_count=30, deadline=None)


@IGNORE_UNCALLED
class TestCachingDispatchComparison(CachingDispatchComparison.TestCase):  # type: ignore[misc,valid-type]
    """tidings and Django agree on random operation sequences with ``use_caching=True``."""

    settings = settings(max_examples=200, stateful_step_count=30, deadline=None)
