"""A module with a signal and receivers of each kind for ``tidings receivers``."""

from __future__ import annotations

from typing import Any

from tidings import Signal, receiver
from tidings.outbox import Event

order_shipped = Signal(name="shop.order_shipped")
#: No receiver is connected to it.
order_lost = Signal(name="shop.order_lost")


@receiver(order_shipped)
def notify(sender: Any, **kwargs: Any) -> None:
    """Do nothing: it only has to be listed."""


def bill(event: Event, **kwargs: Any) -> None:
    """Do nothing: a durable receiver connected under a name of its own."""


def pack(event: Event, **kwargs: Any) -> None:
    """Do nothing: a queue receiver connected under a name of its own."""


def archive(event: Event, **kwargs: Any) -> None:
    """Do nothing: a durable receiver known by its module.qualname."""


order_shipped.connect(bill, delivery="durable", name="shop.billing")
order_shipped.connect(pack, delivery="queue", name="warehouse.packing")
order_shipped.connect(archive, delivery="durable")
