"""A module with a signal and a receiver for ``tidings receivers``."""

from __future__ import annotations

from typing import Any

from tidings import Signal, receiver

order_shipped = Signal(name="shop.order_shipped")


@receiver(order_shipped)
def notify(sender: Any, **kwargs: Any) -> None:
    """Do nothing: it only has to be listed."""
