"""An ordered durable receiver for the order tests: it fails at random and records its runs."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from tidings import Signal
from tidings.outbox import Event

stepped = Signal(name="tests.order.stepped")


class Log:
    """What the receiver saw: successful ``(key, seq)`` runs in order, failures, overlaps."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done: list[tuple[str, int]] = []
        self.active: set[str] = set()
        self.failures = 0
        self.overlaps = 0
        self.rng = random.Random(12)
        self.fail_rate = 0.0

    def reset(self, fail_rate: float) -> None:
        """Forget everything; fail that share of the attempts from now on."""
        with self.lock:
            self.done.clear()
            self.active.clear()
            self.failures = self.overlaps = 0
            self.rng = random.Random(12)
            self.fail_rate = fail_rate


LOG = Log()


def step(key: str, seq: int, event: Event, **kwargs: Any) -> None:
    """Run one step of ``key``: fail now and then; note a second step of ``key`` running."""
    with LOG.lock:
        if key in LOG.active:
            LOG.overlaps += 1
        LOG.active.add(key)
        fail = LOG.rng.random() < LOG.fail_rate
    try:
        time.sleep(0.001)
        if fail:
            with LOG.lock:
                LOG.failures += 1
            raise RuntimeError(f"step {key}/{seq} failed on attempt {event.attempt}")
        with LOG.lock:
            LOG.done.append((key, seq))
    finally:
        with LOG.lock:
            LOG.active.discard(key)
