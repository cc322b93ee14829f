"""Models of the delta app."""

from __future__ import annotations

from tidings.apps import apps


class Entry:
    """A model of the delta app."""


apps.register_model("delta", Entry)
