"""The configuration of the profiles app."""

from __future__ import annotations

from tidings.apps import AppConfig


class ProfilesConfig(AppConfig):
    """Connects the app's receivers once every app's models are loaded."""

    name = "profiles"
    verbose_name = "User profiles"

    def ready(self) -> None:
        """Import the signals module: defining its receivers connects them."""
        from profiles import signals  # noqa: F401
