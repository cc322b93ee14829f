"""Two configs for the gamma app; the default one wins for the module entry."""

from __future__ import annotations

from tests.apps_fixtures import EVENTS
from tidings.apps import AppConfig


class GammaConfig(AppConfig):
    """The default config, with a custom label."""

    default = True
    name = "tests.apps_fixtures.gamma"
    label = "gamma_custom"

    def ready(self) -> None:
        """Record the call."""
        EVENTS.append("ready:gamma")


class GammaAltConfig(AppConfig):
    """An alternative config, used only when named explicitly."""

    name = "tests.apps_fixtures.gamma"
    label = "gamma_alt"
