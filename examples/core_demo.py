"""A tour of the tidings core: receivers, senders, @receiver, send_robust and asend."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from tidings import Signal, receiver

order_placed = Signal(name="order_placed")


class Shop:
    """A sender: receivers can listen to every shop or to this class only."""


class Warehouse:
    """Another sender."""


@receiver(order_placed)
def log_order(sender: Any, order_id: int, **kwargs: Any) -> str:
    print(f"  log_order:          order {order_id} from {sender.__name__}")
    return "logged"


@receiver(order_placed, sender=Shop)
def send_confirmation(sender: Any, order_id: int, **kwargs: Any) -> str:
    print(f"  send_confirmation:  mailing the customer of order {order_id}")
    return "mailed"


@receiver(order_placed)
async def update_dashboard(sender: Any, order_id: int, **kwargs: Any) -> str:
    await asyncio.sleep(0)
    print(f"  update_dashboard:   order {order_id} on the live dashboard (async)")
    return "shown"


def flaky_stock_check(sender: Any, order_id: int, **kwargs: Any) -> None:
    raise RuntimeError(f"stock service down while checking order {order_id}")


def show(responses: list[tuple[Any, Any]]) -> None:
    for func, response in responses:
        print(f"    -> {func.__qualname__} returned {response!r}")


class OneLineFormatter(logging.Formatter):
    """Show the log line send_robust() writes, without the traceback it carries."""

    def formatException(self, ei: Any) -> str:
        return ""


def main() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(OneLineFormatter("    [log] %(name)s ERROR: %(message)s"))
    logging.getLogger("tidings").addHandler(handler)

    print("== The tidings core: receivers, senders, send_robust, asend ".ljust(80, "="))
    print("send(Shop): every receiver, sync ones first, then async ones")
    show(order_placed.send(sender=Shop, order_id=1))

    print("\nsend(Warehouse): send_confirmation listens to Shop only")
    show(order_placed.send(sender=Warehouse, order_id=2))

    print("\nsend_robust(Shop) with a failing receiver: its exception becomes its response")
    order_placed.connect(flaky_stock_check, sender=Shop)
    show(order_placed.send_robust(sender=Shop, order_id=3))
    order_placed.disconnect(flaky_stock_check, sender=Shop)

    print("\nawait asend(Shop) from async code")
    show(asyncio.run(order_placed.asend(sender=Shop, order_id=4)))

    print("\nlive_receivers(Shop): what a send from Shop would call")
    for info in order_placed.live_receivers(Shop):
        kind = "async" if info.is_async else "sync"
        sender = "any sender" if info.sender is None else info.sender.__name__
        print(f"    {info.receiver.__qualname__:<20} {kind:<6} for {sender}")


if __name__ == "__main__":
    main()
