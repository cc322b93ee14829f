"""Scaling guards: connecting many receivers for many distinct senders must stay cheap.

Per-object senders are common (one receiver per instance, per window, per connection), so
``connect`` and ``disconnect`` must not cost more than linear time in the number of
connections. The bounds are about fifty times what a linear implementation needs here, so
only a change of complexity class can break them.
"""

from __future__ import annotations

import time
from typing import Any

from tests.core._support import Thing
from tidings import Signal


def _receiver(**kwargs: Any) -> None:
    """A receiver that does nothing."""


def test_many_distinct_senders_connect_and_disconnect_quickly() -> None:
    """Connecting and disconnecting 300 receivers for 300 distinct senders takes well under 1 s."""
    signal = Signal()
    senders = [Thing() for _ in range(300)]
    start = time.perf_counter()
    for sender in senders:
        signal.connect(_receiver, sender=sender)
    assert all(signal.has_listeners(sender) for sender in senders[::30])
    for sender in senders:
        assert signal.disconnect(_receiver, sender=sender)
    elapsed = time.perf_counter() - start
    assert signal.receivers == []
    assert elapsed < 1.0, f"{elapsed:.2f} s"
