"""UncalledReceiverWarning: a weak receiver collected before any send reached it.

A tidings addition to Django's behaviour (docs/differences.md): lambdas, nested functions,
bound methods and partials are watched, and one that dies unheard is reported by the next
operation of its signal, naming it and the line that connected it.
"""

from __future__ import annotations

import functools
import gc
import inspect
import re
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tidings
from tests.core._support import Thing
from tidings import Signal, TidingsWarning, UncalledReceiverWarning, receiver
from tidings._accel import pure_method
from tidings.apps import CheckWarning
from tidings.testing import capture, muted

THIS_FILE = __file__


def _line_of(marker: str) -> int:
    """The line of this file that holds ``marker`` (in a comment), for site assertions."""
    lines = inspect.getsource(inspect.getmodule(_line_of)).splitlines()  # type: ignore[arg-type]
    return next(n for n, text in enumerate(lines, 1) if text.rstrip().endswith(f"# {marker}"))


def _nested() -> Callable[..., Any]:
    def nested(**kwargs: Any) -> str:
        return "nested"

    return nested


def _module_function(**kwargs: Any) -> str:
    return "module"


class _Handler:
    """A callable object: not watched, since it is as often long-lived as temporary."""

    def __call__(self, **kwargs: Any) -> str:
        return "handler"


TEMPORARIES: dict[str, Callable[[], Callable[..., Any]]] = {
    "lambda": lambda: lambda **kwargs: "lambda",
    "nested function": _nested,
    "bound method": lambda: Thing().method,
    "partial": lambda: functools.partial(_module_function),
}


@pytest.fixture(params=list(TEMPORARIES), ids=list(TEMPORARIES))
def make_temporary(request: pytest.FixtureRequest) -> Callable[[], Callable[..., Any]]:
    """A factory of each kind of receiver that usually dies with the code that made it."""
    return TEMPORARIES[request.param]


@pytest.fixture(
    params=[pytest.param("send", id="send"), pytest.param("pure", id="pure-send")],
)
def send(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``Signal.send`` as this run installs it (compiled where built), and the pure method."""
    if request.param == "send":
        return lambda signal, sender, **named: signal.send(sender, **named)
    pure = pure_method("send")
    return lambda signal, sender, **named: pure(signal, sender, **named)


@pytest.fixture
def recorded() -> Iterator[list[warnings.WarningMessage]]:
    """Every warning issued in the test, recorded instead of raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def _uncalled(caught: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    return [w for w in caught if issubclass(w.category, UncalledReceiverWarning)]


def test_warning_categories_form_a_hierarchy() -> None:
    """UncalledReceiverWarning and CheckWarning are TidingsWarnings, which are UserWarnings."""
    assert issubclass(UncalledReceiverWarning, TidingsWarning)
    assert issubclass(CheckWarning, TidingsWarning)
    assert issubclass(TidingsWarning, UserWarning)
    assert not issubclass(TidingsWarning, tidings.TidingsError)


def test_unheard_temporary_warns_at_the_next_send(
    make_temporary: Callable[[], Callable[..., Any]], send: Callable[..., Any]
) -> None:
    """A temporary connected weakly and collected before any send is reported by the next one."""
    signal = Signal(name="placed")
    signal.connect(make_temporary())  # temporary connect
    gc.collect()
    with pytest.warns(UncalledReceiverWarning) as caught:
        assert send(signal, None) == []
    (warning,) = caught
    message = str(warning.message)
    assert f"{THIS_FILE}:{_line_of('temporary connect')}" in message
    assert "<Signal 'placed'>" in message
    assert "never called" in message
    assert (warning.filename, warning.lineno) == (THIS_FILE, _line_of("temporary connect"))


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("lambda", "<lambda>"),
        ("nested function", "_nested.<locals>.nested"),
        ("bound method", "Thing.method"),
        ("partial", "functools.partial(<function _module_function"),
    ],
)
def test_warning_names_the_receiver(kind: str, expected: str) -> None:
    """The message names the receiver: its qualified name, or the repr of a partial."""
    signal = Signal()
    signal.connect(TEMPORARIES[kind]())
    gc.collect()
    with pytest.warns(UncalledReceiverWarning, match=re.escape(expected)):
        signal.send(None)


def test_nothing_is_issued_inside_garbage_collection(recorded: list[Any]) -> None:
    """The collection that kills the receiver issues nothing; the next operation does."""
    signal = Signal()
    signal.connect(lambda **kwargs: None)
    gc.collect()
    assert _uncalled(recorded) == []
    signal.send(None)
    assert len(_uncalled(recorded)) == 1


PURGING_OPERATIONS: dict[str, Callable[[Signal], object]] = {
    "connect": lambda signal: signal.connect(_module_function),
    "disconnect": lambda signal: signal.disconnect(_module_function),
    "send_robust": lambda signal: signal.send_robust(None),
    "has_listeners": lambda signal: signal.has_listeners(),
    "live_receivers": lambda signal: signal.live_receivers(None),
}


@pytest.mark.parametrize("operation", list(PURGING_OPERATIONS))
def test_every_purging_operation_reports(operation: str) -> None:
    """connect, disconnect and the other purging operations report a death like send does."""
    signal = Signal()
    signal.connect(lambda **kwargs: None)
    gc.collect()
    with pytest.warns(UncalledReceiverWarning):
        PURGING_OPERATIONS[operation](signal)


def test_each_death_is_reported_once(recorded: list[Any]) -> None:
    """A receiver's death is reported by one operation, not by every later one."""
    signal = Signal()
    signal.connect(lambda **kwargs: None)
    gc.collect()
    signal.send(None)
    signal.send(None)
    signal.connect(_module_function)
    assert len(_uncalled(recorded)) == 1


def test_receiver_reached_by_a_send_is_not_reported(
    make_temporary: Callable[[], Callable[..., Any]],
    send: Callable[..., Any],
    recorded: list[Any],
) -> None:
    """A temporary that a send reached once may die silently, on either send path."""
    signal = Signal()
    temporary = make_temporary()
    signal.connect(temporary)
    assert len(send(signal, None)) == 1
    del temporary
    gc.collect()
    assert send(signal, None) == []
    assert _uncalled(recorded) == []


def test_receiver_reached_among_many_is_not_reported(
    send: Callable[..., Any], recorded: list[Any]
) -> None:
    """Each receiver of a multi-receiver send counts as reached, not only the first."""
    signal = Signal()
    temporaries = [_nested() for _ in range(3)]
    for temporary in temporaries:
        signal.connect(temporary)
    assert len(send(signal, None)) == 3
    del temporaries, temporary
    gc.collect()
    send(signal, None)
    assert _uncalled(recorded) == []


@pytest.mark.parametrize("method", ["send_robust", "asend"])
def test_other_send_methods_count_as_reaching(method: str, recorded: list[Any]) -> None:
    """send_robust and asend reach a receiver as send does."""
    import asyncio

    signal = Signal()
    temporary = _nested()
    signal.connect(temporary)
    if method == "send_robust":
        signal.send_robust(None)
    else:
        asyncio.run(signal.asend(None))
    del temporary
    gc.collect()
    signal.send(None)
    assert _uncalled(recorded) == []


def test_disconnected_receiver_is_not_reported(recorded: list[Any]) -> None:
    """A receiver disconnected before it dies was removed on purpose: nothing to report."""
    signal = Signal()
    temporary = _nested()
    signal.connect(temporary)
    assert signal.disconnect(temporary)
    del temporary
    gc.collect()
    signal.send(None)
    assert _uncalled(recorded) == []


def test_receiver_that_dies_with_its_sender_is_not_reported(recorded: list[Any]) -> None:
    """An object's method connected for that object dies with it: no send could reach it."""
    signal = Signal()
    thing = Thing()
    signal.connect(thing.method, sender=thing)
    del thing
    gc.collect()
    signal.send(None)
    assert _uncalled(recorded) == []
    assert signal.receivers == []


def test_receiver_of_a_live_sender_is_reported() -> None:
    """A temporary connected for a sender that outlives it is reported."""
    signal, sender = Signal(), Thing()
    signal.connect(lambda **kwargs: None, sender=sender)
    gc.collect()
    with pytest.warns(UncalledReceiverWarning):
        signal.send(sender)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: _module_function, id="module function"),
        pytest.param(_Handler, id="callable instance"),
    ],
)
def test_unwatched_receivers_die_silently(make: Callable[[], Any], recorded: list[Any]) -> None:
    """Only the usual temporaries are watched: a dying callable instance is not reported."""
    signal = Signal()
    target = make()
    signal.connect(target)
    del target
    gc.collect()
    signal.send(None)
    assert _uncalled(recorded) == []


def test_strong_temporary_is_never_reported(recorded: list[Any]) -> None:
    """A lambda connected with weak=False lives as long as its connection."""
    signal = Signal()
    signal.connect(lambda **kwargs: "kept", weak=False)
    gc.collect()
    assert [response for _, response in signal.send(None)] == ["kept"]
    assert _uncalled(recorded) == []


def test_introspection_does_not_count_as_reaching() -> None:
    """has_listeners, live_receivers and receivers read a receiver without reaching it."""
    signal = Signal()
    temporary = _nested()
    signal.connect(temporary)
    assert signal.has_listeners()
    assert [info.receiver for info in signal.live_receivers()] == [temporary]
    assert repr(signal.receivers[0])
    del temporary
    gc.collect()
    with pytest.warns(UncalledReceiverWarning):
        signal.send(None)


def test_muting_keeps_whether_it_was_reached(recorded: list[Any]) -> None:
    """Restoring receivers after muted() keeps the connect site and the reached state."""
    signal = Signal()
    heard, unheard = _nested(), _nested()
    signal.connect(heard)
    signal.send(None)
    signal.connect(unheard)  # muted connect
    with muted(signal):
        signal.send(None)
    with capture(signal):
        pass
    del heard, unheard
    gc.collect()
    signal.send(None)
    (warning,) = _uncalled(recorded)
    assert warning.lineno == _line_of("muted connect")


def test_filter_turns_it_into_an_error_and_the_signal_stays_usable() -> None:
    """An "error" filter raises from the reporting operation, after the purge is complete."""
    signal = Signal()
    temporaries = [_nested(), _nested()]
    for temporary in temporaries:
        signal.connect(temporary)
    signal.connect(_module_function)
    del temporaries, temporary
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("error", TidingsWarning)
        with pytest.raises(UncalledReceiverWarning):
            signal.send(None)
        # The second death stays queued for the next operation rather than being lost.
        with pytest.raises(UncalledReceiverWarning):
            signal.send(None)
        assert signal.send(None) == [(_module_function, "module")]


def test_module_filter_matches_the_connecting_module(recorded: list[Any]) -> None:
    """A ``module=`` filter silences the warnings of receivers that module connected."""
    warnings.filterwarnings("ignore", category=UncalledReceiverWarning, module=__name__)
    signal = Signal()
    signal.connect(lambda **kwargs: None)
    gc.collect()
    signal.send(None)
    assert _uncalled(recorded) == []


def test_receiver_decorator_reports_the_decorator_line() -> None:
    """A nested function connected by @receiver is reported at the decorator's line."""
    signal = Signal()

    def connect_nested() -> None:
        @receiver(signal)  # decorated nested
        def nested(**kwargs: Any) -> None:
            pass

    connect_nested()
    with pytest.warns(UncalledReceiverWarning, match="connect_nested.<locals>.nested") as caught:
        signal.send(None)
    assert caught[0].lineno in (_line_of("decorated nested"), _line_of("decorated nested") + 1)
