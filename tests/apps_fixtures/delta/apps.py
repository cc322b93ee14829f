"""The delta app's config: ready() imports the signals module."""

from __future__ import annotations

from tidings.apps import AppConfig


class DeltaConfig(AppConfig):
    """Imports ``delta.signals`` once every models module is loaded."""

    name = "tests.apps_fixtures.delta"

    def ready(self) -> None:
        """Connect the app's receivers."""
        from tests.apps_fixtures.delta import signals  # noqa: F401
