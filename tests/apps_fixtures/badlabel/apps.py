"""A config with an invalid label."""

from __future__ import annotations

from tidings.apps import AppConfig


class BadLabelConfig(AppConfig):
    """Its label has a dash."""

    label = "bad-label"
