"""Async durable receivers: awaited with their timeout, from a thread relay or ``arun()``."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from tidings import Signal
from tidings.outbox import DurableReceiver, Outbox, Relay

pinged = Signal(name="net.pinged")


def test_an_async_receiver_is_awaited_by_a_thread_relay(outbox: Outbox) -> None:
    """A sync relay awaits an async receiver in an event loop of its own."""
    seen: list[tuple[int, bool]] = []

    async def receiver(n: int, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        seen.append((n, asyncio.get_running_loop() is not None))

    outbox.write(pinged, ["net.log"], None, {"n": 1})
    Relay(outbox, receivers=[DurableReceiver(pinged, "net.log", receiver)]).run(once=True)
    assert seen == [(1, True)]


def test_an_async_receiver_over_its_timeout_is_a_failed_attempt(outbox: Outbox) -> None:
    """An attempt longer than ``timeout`` is cancelled and counted as a failure."""
    release = asyncio.Event()

    async def stuck(**kwargs: Any) -> None:
        await release.wait()

    outbox.write(pinged, ["net.stuck"], None, {})
    spec = DurableReceiver(pinged, "net.stuck", stuck, timeout=0.05, max_attempts=1)
    relay = Relay(outbox, receivers=[spec])
    relay.run(once=True)
    [letter] = outbox.dead_letters()
    assert letter.error == (
        "TimeoutError: async receiver net.stuck of net.pinged did not finish within its "
        "timeout of 0.05 s (it was cancelled)"
    )
    assert relay.stats.dead == 1


def test_a_timeout_error_an_async_receiver_raises_is_its_own(outbox: Outbox) -> None:
    """A ``TimeoutError`` raised by the receiver itself (its own call timed out) is recorded
    as it is, not as the receiver's timeout."""

    async def impatient(**kwargs: Any) -> None:
        raise TimeoutError("the mail server did not answer")

    outbox.write(pinged, ["net.impatient"], None, {})
    spec = DurableReceiver(pinged, "net.impatient", impatient, timeout=5, max_attempts=1)
    Relay(outbox, receivers=[spec]).run(once=True)
    [letter] = outbox.dead_letters()
    assert letter.error == "TimeoutError: the mail server did not answer"


def test_arun_awaits_async_receivers_in_the_running_loop(outbox: Outbox) -> None:
    """``await relay.arun()`` runs async receivers in the caller's event loop."""
    loops: list[asyncio.AbstractEventLoop] = []

    async def receiver(**kwargs: Any) -> None:
        loops.append(asyncio.get_running_loop())

    outbox.write(pinged, ["net.log"], None, {})
    outbox.write(pinged, ["net.log"], None, {})
    relay = Relay(outbox, receivers=[DurableReceiver(pinged, "net.log", receiver)])

    async def main() -> asyncio.AbstractEventLoop:
        await relay.arun(once=True)
        return asyncio.get_running_loop()

    loop = asyncio.run(main())
    assert loops == [loop, loop]


def test_cancelling_arun_stops_the_relay_after_the_running_receiver(outbox: Outbox) -> None:
    """Cancelling the task running ``arun()`` lets the current receiver finish, then stops."""
    started = threading.Event()
    finished: list[int] = []

    def receiver(n: int, **kwargs: Any) -> None:
        started.set()
        finished.append(n)

    outbox.write(pinged, ["net.log"], None, {"n": 1})
    relay = Relay(
        outbox, receivers=[DurableReceiver(pinged, "net.log", receiver)], poll_interval=0.01
    )

    async def main() -> bool:
        task = asyncio.ensure_future(relay.arun())
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(main()) is True
    assert finished == [1]
    assert not relay.stopping  # the run the stop ended cleared it
    assert outbox.status().pending == 0


def test_async_with_runs_the_relay_as_a_task_of_the_loop_until_the_block_ends(
    outbox: Outbox,
) -> None:
    """``async with Relay(...)`` relays in the running loop (as an ASGI lifespan would) and
    stops, the running receiver finished, when the block ends."""
    loops: list[asyncio.AbstractEventLoop] = []
    seen: list[int] = []

    async def receiver(n: int, **kwargs: Any) -> None:
        loops.append(asyncio.get_running_loop())
        seen.append(n)

    relay = Relay(
        outbox, receivers=[DurableReceiver(pinged, "net.log", receiver)], poll_interval=0.01
    )

    async def main() -> asyncio.AbstractEventLoop:
        async with relay as running:
            assert running is relay
            outbox.write(pinged, ["net.log"], None, {"n": 1})
            outbox.write(pinged, ["net.log"], None, {"n": 2})
            for _ in range(1000):
                if len(seen) == 2:
                    break
                await asyncio.sleep(0.01)
        return asyncio.get_running_loop()

    loop = asyncio.run(main())
    assert (seen, loops) == ([1, 2], [loop, loop])
    assert relay.stats.done == 2
    assert outbox.status().pending == 0
    # Stopped and reusable: a second block relays again.
    outbox.write(pinged, ["net.log"], None, {"n": 3})

    async def again() -> None:
        async with relay:
            for _ in range(1000):
                if len(seen) == 3:
                    break
                await asyncio.sleep(0.01)

    asyncio.run(again())
    assert seen == [1, 2, 3]
