"""Two configs both claiming to be the default."""

from __future__ import annotations

from tidings.apps import AppConfig


class FirstConfig(AppConfig):
    """One default."""

    default = True


class SecondConfig(AppConfig):
    """Another default."""

    default = True
