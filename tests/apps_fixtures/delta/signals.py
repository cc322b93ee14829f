"""Receivers of the delta app, connected with a class sender and with a lazy sender."""

from __future__ import annotations

from typing import Any

from tests.apps_fixtures import EVENTS
from tests.apps_fixtures.delta.models import Entry
from tidings import receiver
from tidings.models import post_save


@receiver(post_save, sender=Entry, dispatch_uid="delta-by-class")
def saved_by_class(sender: type, **kwargs: Any) -> None:
    """Record a save seen through the class sender."""
    EVENTS.append(f"class:{sender.__name__}")


@receiver(post_save, sender="delta.entry", dispatch_uid="delta-by-name")
def saved_by_name(sender: type, **kwargs: Any) -> None:
    """Record a save seen through the lazy sender."""
    EVENTS.append(f"lazy:{sender.__name__}")
