"""tidings.testing: capture, muted and the pytest plugin."""

from __future__ import annotations
import __future__

import asyncio
import gc
import subprocess
import sys
import threading
import types
import unittest
from collections.abc import Callable, Iterator
from typing import Any
from unittest.mock import ANY

import pytest

import tidings.testing
from tidings import Signal
from tidings.models import ModelSignal
from tidings.testing import Call, Capture, Muted, capture, muted

pytest_plugins = ["pytester"]

Receiver = Callable[..., Any]


def make_receiver(log: list[str], name: str, result: Any = None) -> Receiver:
    """Return a receiver that appends ``name`` to ``log`` and returns ``result``."""

    def receiver(**kwargs: Any) -> Any:
        log.append(name)
        return result

    receiver.__qualname__ = f"receiver_{name}"
    return receiver


def names(signal: Signal) -> list[str]:
    """The qualified names of the live receivers of ``signal``, in connection order."""
    return [info.receiver.__qualname__ for info in signal.live_receivers()]


@pytest.fixture
def signal() -> Signal:
    """A fresh signal with a name, for readable messages."""
    return Signal(name="order_paid")


# -- capture ------------------------------------------------------------------------------------


def test_capture_records_sender_and_kwargs_in_send_order(signal: Signal) -> None:
    """A capture records each send as a Call with its sender and keyword arguments, in order."""
    with capture(signal) as paid:
        signal.send("shop", amount=3)
        signal.send_robust(None, amount=4, currency="EUR")
    assert paid.calls == [
        Call("shop", {"amount": 3}),
        Call(None, {"amount": 4, "currency": "EUR"}),
    ]
    assert paid.count == 2


def test_capture_leaves_other_receivers_untouched(signal: Signal) -> None:
    """Other receivers get the same arguments, in the same order, with the same responses."""
    log: list[str] = []
    seen: list[dict[str, Any]] = []
    first = make_receiver(log, "first", 1)

    def second(**kwargs: Any) -> int:
        seen.append(kwargs)
        return 2

    signal.connect(first)
    signal.connect(second)
    without = signal.send("shop", amount=3)
    with capture(signal) as paid:
        within = signal.send("shop", amount=3)
    assert log == ["first", "first"]
    assert seen[0] == seen[1] == {"signal": signal, "sender": "shop", "amount": 3}
    assert within[1:] == without
    assert within[0][1] is None
    assert paid.count == 1


def test_capture_recorder_reads_like_a_receiver_in_the_responses(signal: Signal) -> None:
    """Code reading receivers' names from responses works under a capture, on every send."""
    first = make_receiver([], "first", 1)
    signal.connect(first)

    def names_of(responses: list[tuple[Any, Any]]) -> list[str]:
        return [f"{r.__module__}.{r.__qualname__} ({r.__name__})" for r, _ in responses]

    with capture(signal) as paid:
        robust = signal.send_robust("shop")
        plain = signal.send("shop")
    assert names_of(plain) == names_of(robust)
    assert names_of(plain) == [
        "tidings.testing.Capture.record (record)",
        f"{__name__}.receiver_first (receiver)",
    ]
    assert plain[0] == (paid.record, None)
    assert repr(plain[0][0]) == f"<bound method Capture.record of {paid!r}>"
    assert repr(paid) == f"<Capture of {signal!r}>"


def test_capture_adds_exactly_one_leading_response(signal: Signal) -> None:
    """Without a capture the responses are the receivers' own; with one, one pair is added."""
    first, second = make_receiver([], "first", 1), make_receiver([], "second", 2)
    signal.connect(first)
    signal.connect(second)
    without = signal.send("shop")
    with capture(signal) as paid:
        within = signal.send("shop")
    after = signal.send("shop")
    assert [response for _, response in without] == [1, 2]
    assert without == after
    assert within == [(paid.record, None), *without]
    assert [pair for pair in within if pair[0] != paid.record] == without


def test_capture_records_before_a_failing_receiver(signal: Signal) -> None:
    """The recorder runs first, so a send is recorded even when a receiver raises."""

    def broken(**kwargs: Any) -> None:
        raise KeyError("boom")

    signal.connect(broken)
    with capture(signal) as paid, pytest.raises(KeyError):
        signal.send("shop")
    paid.assert_sent_once_with(sender="shop")


def test_capture_records_nested_sends_in_the_order_they_were_made(signal: Signal) -> None:
    """A send made by a receiver during another send is recorded after the outer send."""

    def resend(sender: Any, depth: int, **kwargs: Any) -> None:
        if depth < 2:
            signal.send(sender, depth=depth + 1)

    signal.connect(resend)
    with capture(signal) as paid:
        signal.send("shop", depth=0)
    assert [call.kwargs["depth"] for call in paid.calls] == [0, 1, 2]


def test_capture_records_asend_inline_on_the_event_loop(signal: Signal) -> None:
    """Under asend and asend_robust the recorder runs on the loop thread, before the others."""
    log: list[str] = []
    threads: list[threading.Thread] = []
    threaded = make_receiver(log, "threaded")

    async def later(**kwargs: Any) -> None:
        log.append("async")

    def where(**kwargs: Any) -> None:
        threads.append(threading.current_thread())

    signal.connect(threaded)
    signal.connect(later)

    async def main() -> Capture:
        with capture(signal) as paid:
            signal.connect(where, inline=True)
            await signal.asend("shop", amount=1)
            await signal.asend_robust("shop", amount=2)
            log.append(f"recorded {paid.count}")
        return paid

    paid = asyncio.run(main())
    assert [call.kwargs for call in paid.calls] == [{"amount": 1}, {"amount": 2}]
    assert log == ["threaded", "async", "threaded", "async", "recorded 2"]
    assert threads == [threading.main_thread()] * 2
    assert signal.live_receivers()[-1].receiver is where


def test_capture_with_sender_records_only_that_sender(signal: Signal) -> None:
    """With ``sender=`` only sends from that very object are recorded (identity, not equality)."""
    shop = ["shop"]
    twin = ["shop"]
    with capture(signal, sender=shop) as paid:
        signal.send(shop, amount=1)
        signal.send(twin, amount=2)
        signal.send(None, amount=3)
    assert paid.calls == [Call(shop, {"amount": 1})]
    assert paid.calls[0].sender is shop


def test_capture_of_model_signal_takes_a_string_sender_literally() -> None:
    """On a ModelSignal a string sender is a plain sender, not a lazy model reference."""
    saved = ModelSignal(name="saved")
    with capture(saved, sender="shop.Order") as orders:
        saved.send("shop.Order", created=True)
    orders.assert_sent_once_with(created=True)


def test_capture_disconnects_on_exit_even_after_an_exception(signal: Signal) -> None:
    """The recorder is gone after the block, also when the block raised; records remain."""
    paid = capture(signal)

    def pay() -> None:
        with paid:
            assert signal.has_listeners("shop")
            assert paid.active
            signal.send("shop")
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        pay()
    assert not paid.active
    assert not signal.has_listeners("shop")
    assert signal.receivers == []
    signal.send("shop")
    assert paid.count == 1


def test_two_captures_of_one_signal_both_record(signal: Signal) -> None:
    """Each capture has its own recorder, so captures are never deduplicated."""
    with capture(signal) as outer, capture(signal) as inner:
        signal.send("shop")
    assert outer.count == inner.count == 1


def test_capture_cannot_be_started_twice(signal: Signal) -> None:
    """Entering a capture a second time raises RuntimeError naming the capture."""
    paid = capture(signal)
    with paid:
        pass
    with pytest.raises(RuntimeError, match=r"order_paid.*already used"), paid:
        pass


def test_capture_rejects_a_non_signal() -> None:
    """capture() of something that is not a Signal raises TypeError."""
    with pytest.raises(TypeError, match="expects a Signal"):
        capture("order_paid")  # type: ignore[arg-type]


def test_assert_sent_once_passes_for_one_send_and_lists_sends_otherwise(signal: Signal) -> None:
    """assert_sent_once passes on exactly one send and otherwise lists every recorded send."""
    with capture(signal) as paid:
        signal.send("shop", amount=1)
    paid.assert_sent_once()
    with capture(signal) as twice:
        signal.send("shop", amount=1)
        signal.send("bank", amount=2)
    with pytest.raises(AssertionError) as info:
        twice.assert_sent_once()
    assert str(info.value) == (
        "Expected <Signal 'order_paid'> to be sent once, but it was sent 2 times:\n"
        "  1. sender='shop', amount=1\n"
        "  2. sender='bank', amount=2"
    )


def test_assert_not_sent(signal: Signal) -> None:
    """assert_not_sent passes without sends and fails naming the signal and the send."""
    with capture(signal, sender="shop") as paid:
        signal.send("bank")
    paid.assert_not_sent()
    with capture(signal) as any_sender:
        signal.send("bank", amount=5)
    with pytest.raises(AssertionError) as info:
        any_sender.assert_not_sent()
    assert str(info.value) == (
        "Expected <Signal 'order_paid'> not to be sent, but it was sent once:\n"
        "  1. sender='bank', amount=5"
    )


def test_assert_sent_with_matches_any_send_on_the_given_arguments(signal: Signal) -> None:
    """assert_sent_with passes when any send has the sender and the given keyword values."""
    with capture(signal) as paid:
        signal.send("shop", amount=1, currency="EUR")
        signal.send("bank", amount=2, currency="USD")
    paid.assert_sent_with(sender="bank")
    paid.assert_sent_with(amount=2)
    paid.assert_sent_with(sender="shop", amount=1, currency="EUR")
    paid.assert_sent_with(sender=ANY, currency=ANY)
    paid.assert_sent_with()
    for wrong in ({"sender": "bank", "amount": 1}, {"refund": False}, {"sender": None}):
        with pytest.raises(AssertionError):
            paid.assert_sent_with(**wrong)


def test_assert_sent_with_message_shows_expected_and_recorded(signal: Signal) -> None:
    """A failing assert_sent_with names the signal, the expectation and each recorded send."""
    with capture(signal, sender="shop") as paid:
        signal.send("shop", amount=1)
    with pytest.raises(AssertionError) as info:
        paid.assert_sent_with(amount=2)
    assert str(info.value) == (
        "Expected <Signal 'order_paid'> from sender 'shop' to be sent with amount=2, "
        "but it was sent once:\n"
        "  1. sender='shop', amount=1"
    )


def test_assertion_on_a_signal_never_sent_says_so(signal: Signal) -> None:
    """When nothing was recorded the message says the signal was never sent."""
    with capture(signal) as paid:
        pass
    with pytest.raises(AssertionError, match=r"^Expected <Signal 'order_paid'> to be sent once"):
        paid.assert_sent_once()
    with pytest.raises(AssertionError) as info:
        paid.assert_sent_once_with(sender=None)
    assert str(info.value) == (
        "Expected <Signal 'order_paid'> to be sent once with sender=None, but it was never sent."
    )


def test_assert_sent_once_with_needs_one_matching_send(signal: Signal) -> None:
    """assert_sent_once_with fails when the only send differs or when there are two sends."""
    with capture(signal) as paid:
        signal.send("shop", amount=1)
    paid.assert_sent_once_with(sender="shop", amount=1)
    with pytest.raises(AssertionError, match="sent once with amount=2, but it was sent once"):
        paid.assert_sent_once_with(amount=2)
    signal.connect(make_receiver([], "noop"), weak=False)
    with capture(signal) as twice:
        signal.send("shop", amount=1)
        signal.send("shop", amount=1)
    with pytest.raises(AssertionError, match="sent 2 times"):
        twice.assert_sent_once_with(amount=1)


def test_assertion_message_survives_long_and_broken_reprs(signal: Signal) -> None:
    """Long values are shortened and a failing __repr__ does not hide the assertion."""

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    with capture(signal) as paid:
        signal.send(Broken(), blob="x" * 1000)
    with pytest.raises(AssertionError) as info:
        paid.assert_not_sent()
    message = str(info.value)
    assert ".Broken object with a failing repr>" in message
    assert "xxx..." in message
    assert len(message) < 400


# -- muted --------------------------------------------------------------------------------------


def test_muted_silences_every_receiver_and_restores_them_in_order(signal: Signal) -> None:
    """Inside muted() no receiver runs; afterwards the same connections come back in order."""
    log: list[str] = []
    a, b, c, d = (make_receiver(log, name) for name in "abcd")
    shop = types.SimpleNamespace()
    signal.connect(a)
    signal.connect(b, sender=shop)
    signal.connect(c, weak=False, dispatch_uid="c")

    async def d_async(**kwargs: Any) -> None:
        log.append("d_async")

    signal.connect(d_async)
    signal.connect(d)
    before = signal.receivers
    with muted(signal):
        assert signal.send(shop) == []
        assert not signal.has_listeners(shop)
    assert log == []
    assert signal.receivers == before
    signal.send(shop)
    assert log == ["a", "b", "c", "d", "d_async"]


def test_receivers_connected_while_muted_run_and_stay_after_the_restored(signal: Signal) -> None:
    """A receiver connected while muted is live at once and stays, after the restored ones."""
    log: list[str] = []
    a, b, late, later = (make_receiver(log, name) for name in ("a", "b", "late", "later"))
    signal.connect(a)
    signal.connect(b)
    with muted(signal):
        signal.connect(late)
        signal.connect(later)
        signal.send("shop")
        assert log == ["late", "later"]
    assert names(signal) == ["receiver_a", "receiver_b", "receiver_late", "receiver_later"]


def test_reconnecting_a_muted_receiver_keeps_its_original_place(signal: Signal) -> None:
    """A muted receiver connected again while muted is not duplicated: the original stays."""
    log: list[str] = []
    a, b = make_receiver(log, "a"), make_receiver(log, "b")
    signal.connect(a)
    signal.connect(b)
    with muted(signal):
        signal.connect(a, weak=False)
    assert names(signal) == ["receiver_a", "receiver_b"]
    assert signal.live_receivers()[0].weak
    signal.send("shop")
    assert log == ["a", "b"]


def test_a_receiver_disconnected_while_muted_comes_back(signal: Signal) -> None:
    """Disconnecting a muted receiver inside the block finds nothing, so it is restored."""
    a = make_receiver([], "a")
    signal.connect(a)
    with muted(signal):
        assert signal.disconnect(a) is False
    assert names(signal) == ["receiver_a"]


def test_partial_muting_silences_only_the_given_receivers() -> None:
    """With receivers=, only those are muted, on every sender, and return to their places."""
    signal = Signal(name="order_paid", string_senders=True)
    log: list[str] = []
    a, b, c = (make_receiver(log, name) for name in "abc")
    signal.connect(a)
    signal.connect(b, sender="shop")
    signal.connect(c)
    signal.connect(b, sender="bank")
    before = signal.receivers
    with muted(signal, receivers=[b]):
        signal.send("shop")
        signal.send("bank")
        assert log == ["a", "c", "a", "c"]
        assert names(signal) == ["receiver_a", "receiver_c"]
    assert signal.receivers == before


def test_partial_muting_keeps_changes_to_the_unmuted_receivers(signal: Signal) -> None:
    """Receivers left live may be disconnected or joined while muted; that change persists."""
    a, b, c, d = (make_receiver([], name) for name in "abcd")
    signal.connect(a)
    signal.connect(b)
    signal.connect(c)
    with muted(signal, receivers=[b]):
        signal.disconnect(a)
        signal.connect(d)
    assert names(signal) == ["receiver_b", "receiver_c", "receiver_d"]


def test_partial_muting_matches_bound_methods_by_object_and_function(signal: Signal) -> None:
    """A weakly connected bound method is muted when given as a fresh bound method."""
    log: list[str] = []

    class Mailer:
        def on_paid(self, **kwargs: Any) -> None:
            log.append("mail")

    mailer = Mailer()
    other = make_receiver(log, "other")
    signal.connect(mailer.on_paid)
    signal.connect(other)
    with muted(signal, receivers=[mailer.on_paid]):
        signal.send("shop")
    signal.send("shop")
    assert log == ["other", "mail", "other"]


def test_partial_muting_of_an_unconnected_receiver_raises(signal: Signal) -> None:
    """Muting a receiver connected to none of the signals raises ValueError and changes nothing."""
    a, stranger = make_receiver([], "a"), make_receiver([], "stranger")
    signal.connect(a)
    before = signal.receivers
    with pytest.raises(ValueError, match=r"receiver_stranger: not connected to <Signal 'order"):
        muted(signal, receivers=[a, stranger]).__enter__()
    assert signal.receivers == before


def test_partial_muting_accepts_a_receiver_connected_to_only_one_signal(signal: Signal) -> None:
    """With several signals a receiver needs to be connected to one of them only."""
    other = Signal(name="order_shipped")
    log: list[str] = []
    a, b = make_receiver(log, "a"), make_receiver(log, "b")
    signal.connect(a)
    other.connect(b)
    with muted(signal, other, receivers=[a, b]):
        signal.send("shop")
        other.send("shop")
    assert log == []


def test_nested_muting_restores_each_level(signal: Signal) -> None:
    """Partial inside full and full inside partial muting each restore their own level."""
    log: list[str] = []
    a, b, c, d = (make_receiver(log, name) for name in "abcd")
    signal.connect(a)
    signal.connect(b)
    with muted(signal, receivers=[a]):
        signal.connect(c)
        with muted(signal):
            signal.connect(d)
            signal.send("shop")
        assert names(signal) == ["receiver_b", "receiver_c", "receiver_d"]
        with muted(signal, receivers=[c]):
            signal.send("shop")
    assert log == ["d", "b", "d"]
    assert names(signal) == ["receiver_a", "receiver_b", "receiver_c", "receiver_d"]


def test_one_muted_object_can_be_nested_in_itself(signal: Signal) -> None:
    """The same Muted object may be entered again inside its own block."""
    a, b = make_receiver([], "a"), make_receiver([], "b")
    signal.connect(a)
    silence = muted(signal)
    with silence:
        signal.connect(b)
        with silence:
            assert signal.receivers == []
        assert names(signal) == ["receiver_b"]
    assert names(signal) == ["receiver_a", "receiver_b"]


def test_muted_restores_after_an_exception(signal: Signal) -> None:
    """An exception in the block propagates and the receivers are restored all the same."""
    a = make_receiver([], "a")
    signal.connect(a)
    with pytest.raises(LookupError), muted(signal):
        raise LookupError("in block")
    assert names(signal) == ["receiver_a"]


def test_muted_handles_several_signals_and_repeats(signal: Signal) -> None:
    """Several signals are muted together; naming one twice mutes it once."""
    other = Signal(name="order_shipped")
    a, b = make_receiver([], "a"), make_receiver([], "b")
    signal.connect(a)
    other.connect(b)
    silence = muted(signal, other, signal)
    assert silence.signals == (signal, other)
    with silence:
        assert not signal.has_listeners()
        assert not other.has_listeners()
    assert names(signal) == ["receiver_a"]
    assert names(other) == ["receiver_b"]


def test_a_receiver_collected_while_muted_is_not_restored(signal: Signal) -> None:
    """A weak receiver that dies while muted stays dead: restoring it calls nothing."""
    log: list[str] = []
    a, gone, keep = (make_receiver(log, name) for name in ("a", "gone", "keep"))
    signal.connect(a)
    signal.connect(gone)
    signal.connect(keep)
    with muted(signal):
        del gone
        gc.collect()
    signal.send("shop")
    assert log == ["a", "keep"]
    assert names(signal) == ["receiver_a", "receiver_keep"]


def test_muted_restores_sender_plans_of_a_caching_signal() -> None:
    """On a use_caching signal, per-sender receivers are reached again after muting."""
    saved = ModelSignal(use_caching=True, name="saved")
    log: list[str] = []
    a, b = make_receiver(log, "a"), make_receiver(log, "b")

    class Order:
        pass

    saved.connect(a, sender=Order)
    saved.connect(b)
    saved.send(Order)
    with muted(saved):
        saved.send(Order)
    saved.send(Order)
    assert log == ["a", "b", "a", "b"]


def test_capture_records_sends_from_several_threads(signal: Signal) -> None:
    """Sends made concurrently from several threads are all recorded."""
    barrier = threading.Barrier(4)

    def pay(worker: int) -> None:
        barrier.wait(timeout=10)
        for number in range(200):
            signal.send(worker, number=number)

    with capture(signal) as paid:
        threads = [threading.Thread(target=pay, args=(worker,)) for worker in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    assert paid.count == 800
    for worker in range(4):
        mine = [call.kwargs["number"] for call in paid.calls if call.sender == worker]
        assert mine == list(range(200))


def test_muted_never_silences_a_capture(signal: Signal) -> None:
    """An active capture keeps recording while the signal's receivers are muted."""
    log: list[str] = []
    a = make_receiver(log, "a")
    signal.connect(a)
    with capture(signal) as paid, muted(signal):
        signal.send("shop")
    with muted(signal), capture(signal) as inner:
        signal.send("shop")
    assert log == []
    assert paid.count == inner.count == 1
    assert names(signal) == ["receiver_a"]


def test_muted_rejects_bad_arguments(signal: Signal) -> None:
    """muted() without a signal, or with something else than a Signal, raises TypeError."""
    with pytest.raises(TypeError, match="at least one signal"):
        muted()
    with pytest.raises(TypeError, match="expects Signals, not 'post_save'"):
        muted(signal, "post_save")  # type: ignore[arg-type]


def test_muted_decorates_a_function(signal: Signal) -> None:
    """A decorated function runs muted, returns its result and keeps its name."""
    log: list[str] = []
    a = make_receiver(log, "a")
    signal.connect(a)

    @muted(signal)
    def pay(amount: int) -> int:
        """Pay."""
        signal.send("shop", amount=amount)
        return amount * 2

    assert pay(3) == 6
    assert (pay.__name__, pay.__doc__) == ("pay", "Pay.")
    signal.send("shop")
    assert log == ["a"]


def test_muted_decorates_an_async_function(signal: Signal) -> None:
    """A decorated async function stays a coroutine function and is muted while awaited."""
    log: list[str] = []
    a = make_receiver(log, "a")
    signal.connect(a)

    @muted(signal)
    async def pay() -> str:
        await asyncio.sleep(0)
        await signal.asend("shop")
        return "paid"

    assert asyncio.iscoroutinefunction(pay)
    assert asyncio.run(pay()) == "paid"
    assert log == []
    assert names(signal) == ["receiver_a"]


def test_muted_decorates_a_generator_function(signal: Signal) -> None:
    """A decorated generator function is muted until it finishes, like a yield fixture."""
    a = make_receiver([], "a")
    signal.connect(a)

    @muted(signal)
    def fixture() -> Iterator[bool]:
        yield signal.has_listeners()
        return

    steps = fixture()
    assert next(steps) is False
    assert not signal.has_listeners()
    with pytest.raises(StopIteration):
        next(steps)
    assert signal.has_listeners()


def test_muted_decorates_the_test_methods_of_a_class(signal: Signal) -> None:
    """On a class, methods named test* (inherited, static and class ones too) run muted."""
    a = make_receiver([], "a")
    signal.connect(a)

    class Base:
        def test_inherited(self) -> bool:
            return signal.has_listeners()

    @muted(signal)
    class Tests(Base):
        test_data = (1, 2)

        def helper(self) -> bool:
            return signal.has_listeners()

        def test_method(self) -> bool:
            return signal.has_listeners()

        @staticmethod
        def test_static() -> bool:
            return signal.has_listeners()

        @classmethod
        def test_class(cls) -> bool:
            return signal.has_listeners()

        async def test_async(self) -> bool:
            return signal.has_listeners()

    tests = Tests()
    assert tests.helper() is True
    assert tests.test_data == (1, 2)
    assert not any(
        [tests.test_method(), tests.test_static(), Tests.test_class(), tests.test_inherited()]
    )
    assert asyncio.run(tests.test_async()) is False
    assert Base().test_inherited() is True


def test_muted_decorates_unittest_test_cases(signal: Signal) -> None:
    """On unittest.TestCase and IsolatedAsyncioTestCase classes each test runs muted."""
    a = make_receiver([], "a")
    signal.connect(a)
    seen: list[tuple[str, bool]] = []

    @muted(signal)
    class SyncCase(unittest.TestCase):
        def setUp(self) -> None:
            seen.append(("setUp", signal.has_listeners()))

        def test_paid(self) -> None:
            seen.append(("test_paid", signal.has_listeners()))
            seen.append(("sent", signal.send("shop") == []))

    @muted(signal)
    class AsyncCase(unittest.IsolatedAsyncioTestCase):
        async def test_paid_async(self) -> None:
            seen.append(("test_paid_async", signal.has_listeners()))
            seen.append(("asent", await signal.asend("shop") == []))

    loader = unittest.defaultTestLoader
    suite = unittest.TestSuite(
        [loader.loadTestsFromTestCase(SyncCase), loader.loadTestsFromTestCase(AsyncCase)]
    )
    result = unittest.TestResult()
    suite.run(result)
    assert result.wasSuccessful(), result.errors + result.failures
    assert result.testsRun == 2
    assert seen == [
        ("setUp", True),
        ("test_paid", False),
        ("sent", True),
        ("test_paid_async", False),
        ("asent", True),
    ]
    assert names(signal) == ["receiver_a"]


# -- module and pytest plugin ------------------------------------------------------------------


def test_all_is_sorted_and_complete() -> None:
    """``tidings.testing.__all__`` is sorted and names every public attribute but the hook."""
    assert tidings.testing.__all__ == sorted(tidings.testing.__all__)
    public = {
        name
        for name, value in vars(tidings.testing).items()
        if not name.startswith(("_", "pytest_"))
        and not isinstance(value, types.ModuleType)
        and value is not __future__.annotations
        and getattr(value, "__module__", None) == "tidings.testing"
    }
    assert set(tidings.testing.__all__) == public
    assert {Call, Capture, Muted} <= {getattr(tidings.testing, n) for n in public}


def test_import_does_not_import_pytest() -> None:
    """Importing tidings.testing outside pytest does not import pytest."""
    code = "import sys, tidings.testing; print('pytest' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "False"


def test_pytest_fixtures_capture_and_mute_until_teardown(pytester: pytest.Pytester) -> None:
    """The entry-point plugin's fixtures capture and mute during a test and undo it after."""
    pytester.makepyfile(
        """
        from tidings import Signal
        from tidings.testing import muted

        paid = Signal(name="paid")
        log = []

        def keep(**kwargs):
            log.append("keep")

        def mail(**kwargs):
            log.append("mail")

        paid.connect(keep)
        paid.connect(mail)

        def test_capture(signal_capture):
            shop = signal_capture(paid, sender="shop")
            everything = signal_capture(paid)
            paid.send("shop", amount=1)
            paid.send("bank", amount=2)
            shop.assert_sent_once_with(amount=1)
            assert everything.count == 2

        def test_capture_is_gone():
            assert [info.receiver for info in paid.live_receivers()] == [keep, mail]

        def test_mute(mute_signals):
            mute_signals(paid, receivers=[mail])
            log.clear()
            paid.send("shop")
            assert log == ["keep"]
            mute_signals(paid)
            paid.send("shop")
            assert log == ["keep"]

        def test_mute_is_undone():
            log.clear()
            paid.send("shop")
            assert log == ["keep", "mail"]

        @muted(paid)
        def test_decorated_test_still_gets_fixtures(tmp_path):
            log.clear()
            paid.send("shop")
            assert log == []
            assert tmp_path.is_dir()
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)


def test_pytest_fixtures_are_listed(pytester: pytest.Pytester) -> None:
    """``pytest --fixtures`` lists both fixtures with their descriptions."""
    result = pytester.runpytest_inprocess("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        ["signal_capture*", "*Start a capture*", "mute_signals*", "*Mute:*restored at teardown*"]
    )
