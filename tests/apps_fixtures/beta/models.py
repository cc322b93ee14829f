"""Models of the beta app."""

from __future__ import annotations

from tests.apps_fixtures import EVENTS
from tidings.apps import apps


class Comment:
    """A model of the beta app."""


EVENTS.append("models:beta")
apps.register_model("beta", Comment)
