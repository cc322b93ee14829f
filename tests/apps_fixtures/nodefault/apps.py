"""Two configs, neither marked default, and an imported base that must not count."""

from __future__ import annotations

from tests.apps_fixtures.alpha.apps import AlphaConfig  # noqa: F401  (imported, not defined)
from tidings.apps import AppConfig


class OneConfig(AppConfig):
    """A candidate."""

    label = "nodefault_one"


class TwoConfig(AppConfig):
    """Another candidate."""

    label = "nodefault_two"
