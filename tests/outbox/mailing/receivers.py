"""The mailing app's durable receiver; imported by its config's ``ready()`` only."""

from __future__ import annotations

from typing import Any

from tests.outbox.worker_app import record
from tidings import Signal, receiver
from tidings.outbox import Event

newsletter_due = Signal(name="mailing.newsletter_due")


@receiver(newsletter_due, delivery="durable", name="mailing.send_newsletter")
def send_newsletter(event: Event, **kwargs: Any) -> None:
    """Record the call in the calls file."""
    record(event)
