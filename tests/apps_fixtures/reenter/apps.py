"""A config that re-enters populate() from ready()."""

from __future__ import annotations

from tidings.apps import AppConfig


class ReenterConfig(AppConfig):
    """Calls populate() on its own registry from ready()."""

    def ready(self) -> None:
        """Re-enter the registry's population."""
        assert self.apps is not None
        self.apps.populate(["tests.apps_fixtures.plain"])
