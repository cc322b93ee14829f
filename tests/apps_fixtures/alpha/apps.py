"""The alpha app's only config, picked up automatically."""

from __future__ import annotations

from tests.apps_fixtures import EVENTS
from tidings.apps import AppConfig


class AlphaConfig(AppConfig):
    """Records the moment its ready() hook runs, and which models exist by then."""

    name = "tests.apps_fixtures.alpha"
    verbose_name = "Alpha app"

    def ready(self) -> None:
        """Record the call and the models the registry knows at that moment."""
        assert self.apps is not None
        known = ",".join(sorted(m.__name__ for m in self.apps.get_models()))
        EVENTS.append(f"ready:alpha[{known}]")
