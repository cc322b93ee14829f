"""A small instrumented application for the ``delivery="durable"`` tests.

Module level, so its models and receivers have stable names; receivers append what they got to
``CALLS``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tidings import Signal
from tidings.outbox import Event
from tidings.sqlalchemy import instrument


class Base(DeclarativeBase):
    """The test shop's models."""


class Customer(Base):
    """A customer; saving one sends ``post_save``."""

    __tablename__ = "shop_customers"
    __app_label__ = "shop"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200))


instrument(Base)

order_placed = Signal(name="shop.order_placed")
unnamed = Signal()

CALLS: list[tuple[str, dict[str, Any]]] = []


def send_receipt(event: Event, **kwargs: Any) -> None:
    """Record the call."""
    CALLS.append(("send_receipt", {"event": event, **kwargs}))


def index_order(event: Event, **kwargs: Any) -> None:
    """Record the call (a second durable receiver of the same signal)."""
    CALLS.append(("index_order", {"event": event, **kwargs}))


def welcome(event: Event, instance: Any, **kwargs: Any) -> None:
    """Record the customer it was called for, as loaded by the worker."""
    CALLS.append(("welcome", {"event": event, "instance": instance, **kwargs}))


async def notify(event: Event, **kwargs: Any) -> None:
    """Record the call after yielding to the loop once."""
    await asyncio.sleep(0)
    CALLS.append(("notify", {"event": event, **kwargs}))


class Mailer:
    """Receivers as methods."""

    @classmethod
    def on_class(cls, **kwargs: Any) -> None:
        """A classmethod: stable, ``tests.outbox.shop.Mailer.on_class``."""
        CALLS.append(("on_class", kwargs))

    def on_instance(self, **kwargs: Any) -> None:
        """Bound to an instance: no stable name."""
