"""One run of a relay at a time, a relay that runs again after a stop, a task that fails."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from tidings import Signal
from tidings._errors import TidingsRuntimeError
from tidings.outbox import DurableReceiver, Outbox, Relay, RelayBusyError

tapped = Signal(name="door.tapped")


class Gate:
    """A receiver that says it started and waits until it is let through."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.through = threading.Event()
        self.calls = 0

    def __call__(self, **kwargs: Any) -> None:
        self.calls += 1
        self.started.set()
        assert self.through.wait(30)


def relay_of(outbox: Outbox, receiver: Callable[..., Any], **options: Any) -> Relay:
    """A relay of ``outbox`` that knows ``receiver`` as door.log, polling often."""
    return Relay(
        outbox,
        receivers=[DurableReceiver(tapped, "door.log", receiver)],
        poll_interval=0.02,
        **options,
    )


def write(outbox: Outbox, count: int = 1) -> None:
    """Store ``count`` deliveries for door.log."""
    for _ in range(count):
        outbox.write(tapped, ["door.log"], None, {})


@pytest.fixture
def sqlite_box(tmp_path: Path) -> Iterator[Outbox]:
    """An outbox on a SQLite file of its own (one relay lease for the whole file)."""
    engine = create_engine(f"sqlite:///{tmp_path / 'runs.db'}")
    box = Outbox(engine)
    box.create_all()
    try:
        yield box
    finally:
        engine.dispose()


def test_run_refuses_to_begin_while_the_relay_runs_in_its_thread(outbox: Outbox) -> None:
    """``run()`` on a started relay raises, naming the relay; once closed, it runs."""
    gate = Gate()
    gate.through.set()
    relay = relay_of(outbox, gate).start()
    try:
        with pytest.raises(TidingsRuntimeError, match=re.escape(f"{relay!r} is already running")):
            relay.run(once=True)
    finally:
        relay.close()
    write(outbox)
    relay.run(once=True)
    assert gate.calls == 1


def test_start_arun_and_async_with_refuse_while_run_goes_on(outbox: Outbox) -> None:
    """While ``run()`` runs in a thread of the caller's, the other ways in raise and touch
    nothing of it; after it ended, they run."""
    gate = Gate()
    relay = relay_of(outbox, gate)
    write(outbox)
    runner = threading.Thread(target=relay.run)
    runner.start()
    try:
        assert gate.started.wait(30)
        with pytest.raises(TidingsRuntimeError, match="already running"):
            relay.start()
        with pytest.raises(TidingsRuntimeError, match="already running"):
            relay.run(once=True)

        async def in_a_loop() -> None:
            with pytest.raises(TidingsRuntimeError, match="already running"):
                await relay.arun(once=True)
            with pytest.raises(TidingsRuntimeError, match="already running"):
                async with relay:
                    pass  # pragma: no cover

        asyncio.run(in_a_loop())
        assert relay._thread is None
        assert relay._task is None
        assert not relay.stopping
    finally:
        gate.through.set()
        relay.stop()
        runner.join(30)
    assert not runner.is_alive()
    assert (gate.calls, relay.stats.done) == (1, 1)
    write(outbox)
    asyncio.run(relay.arun(once=True))
    assert gate.calls == 2


def stop_by_with(relay: Relay) -> None:
    """Run it in a ``with`` block and leave the block."""
    with relay:
        pass


def stop_by_stop(relay: Relay) -> None:
    """Run it in a thread of the caller's and ``stop()`` it."""
    runner = threading.Thread(target=relay.run)
    runner.start()
    threading.Event().wait(0.1)
    relay.stop()
    runner.join(30)
    assert not runner.is_alive()


def stop_by_cancel(relay: Relay) -> None:
    """Run ``arun()`` as a task and cancel it."""

    async def main() -> None:
        task = asyncio.ensure_future(relay.arun())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def stop_by_async_with(relay: Relay) -> None:
    """Run it in an ``async with`` block and leave the block."""

    async def main() -> None:
        async with relay:
            await asyncio.sleep(0.1)

    asyncio.run(main())


@pytest.mark.parametrize(
    "stopped",
    [stop_by_with, stop_by_stop, stop_by_cancel, stop_by_async_with],
    ids=["with", "stop", "cancelled-arun", "async-with"],
)
def test_a_stopped_relay_runs_again(outbox: Outbox, stopped: Callable[[Relay], None]) -> None:
    """After a run ended by a stop, however it was stopped, ``run(once=True)`` relays."""
    gate = Gate()
    gate.through.set()
    relay = relay_of(outbox, gate)
    stopped(relay)
    assert not relay.stopping
    write(outbox, 2)
    relay.run(once=True)
    assert (gate.calls, outbox.status().pending) == (2, 0)


def test_a_stop_before_the_run_ends_that_run_as_it_begins(outbox: Outbox) -> None:
    """``stop()`` while the relay does not run makes the next ``run()`` return at once,
    claiming nothing (a signal handler's stop is not lost); the run after that relays."""
    gate = Gate()
    gate.through.set()
    relay = relay_of(outbox, gate)
    write(outbox)
    relay.stop()
    runner = threading.Thread(target=relay.run)  # would run until stopped
    runner.start()
    runner.join(30)
    assert not runner.is_alive()
    assert (gate.calls, outbox.status().pending) == (0, 1)
    relay.run(once=True)
    assert gate.calls == 1


def test_close_right_after_start_stops_the_thread_every_time(outbox: Outbox) -> None:
    """The stop of a ``close()`` that follows ``start()`` at once is never lost to the
    thread beginning its run."""
    relay = relay_of(outbox, Gate())
    for _ in range(50):
        relay.start()
        thread = relay._thread
        assert thread is not None
        relay.close(timeout=30)
        assert not thread.is_alive()


def test_a_relay_whose_thread_died_runs_again_after_close(sqlite_box: Outbox) -> None:
    """A relay thread that failed (another relay held the SQLite file) raises on close()
    and, the database free, runs again: the close's stop does not linger."""
    holder = Relay(sqlite_box, receivers=[], name="holder", poll_interval=0.02).start()
    gate = Gate()
    gate.through.set()
    relay = relay_of(sqlite_box, gate, wait=False)
    try:
        relay.start()
        assert relay._thread is not None
        relay._thread.join(30)
    finally:
        holder.close()
    with pytest.raises(RelayBusyError, match="another relay \\(holder\\) holds"):
        relay.close()
    write(sqlite_box)
    relay.run(once=True)
    assert gate.calls == 1


def test_async_with_logs_a_failed_relay_task_at_once_and_raises_it_on_exit(
    sqlite_box: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    """A relay task that fails inside ``async with`` is logged as it fails, while the block
    still runs (an ASGI app would run on with no relay), and raised when the block ends."""
    holder = Relay(sqlite_box, receivers=[], name="holder", poll_interval=0.02).start()
    gate = Gate()
    gate.through.set()
    relay = relay_of(sqlite_box, gate, wait=False)
    seen: list[str] = []

    async def main() -> None:
        async with relay:
            for _ in range(3000):
                seen.extend(
                    record.getMessage()
                    for record in caplog.records
                    if record.levelname == "ERROR" and record.exc_info is not None
                )
                if seen:
                    break
                await asyncio.sleep(0.01)

    try:
        with pytest.raises(RelayBusyError, match="another relay \\(holder\\) holds"):
            asyncio.run(main())
    finally:
        holder.close()
    assert seen == [f"{relay!r} stopped on an error"]
    errors = [record for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert errors[0].exc_info[0] is RelayBusyError
    write(sqlite_box)
    relay.run(once=True)  # the exit's stop does not linger either
    assert gate.calls == 1
