"""The mailing app's config: connects its receivers when the registry is populated."""

from __future__ import annotations

from tidings.apps import AppConfig


class MailingConfig(AppConfig):
    """Imports the receivers module in ``ready()``, as a Django app does."""

    name = "tests.outbox.mailing"

    def ready(self) -> None:
        """Connect the app's durable receivers."""
        from tests.outbox.mailing import receivers  # noqa: F401  (connects at import)
