"""Only the config defined here is a candidate; the imported one belongs to alpha."""

from __future__ import annotations

from tests.apps_fixtures.alpha.apps import AlphaConfig  # noqa: F401  (imported, not defined)
from tidings.apps import AppConfig


class OwnConfig(AppConfig):
    """The config of this app."""

    label = "own_label"
