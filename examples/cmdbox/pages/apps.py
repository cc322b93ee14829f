"""The configuration of the pages app."""

from __future__ import annotations

from tidings.apps import AppConfig


class PagesConfig(AppConfig):
    """Connects the cache-invalidation receivers once every app's models are loaded."""

    name = "pages"
    verbose_name = "Cached pages"

    def ready(self) -> None:
        """Import the signals module: defining its receivers connects them."""
        from pages import signals  # noqa: F401
