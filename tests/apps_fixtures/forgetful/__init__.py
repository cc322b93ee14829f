"""An app whose ready() connects a nested function it does not keep, and one it keeps."""

from __future__ import annotations

from tidings import Signal

order_placed = Signal(name="order_placed")
