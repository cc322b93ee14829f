"""The configuration of the blog app."""

from __future__ import annotations

from tidings.apps import AppConfig


class BlogConfig(AppConfig):
    """Connects the blog's own receivers once every app's models are loaded."""

    name = "blog"

    def ready(self) -> None:
        """Import the signals module: defining its receivers connects them."""
        from blog import signals  # noqa: F401
