"""Models of the alpha app, registered by hand as an ORM integration would."""

from __future__ import annotations

from tests.apps_fixtures import EVENTS
from tidings.apps import apps


class Post:
    """A model of the alpha app."""


EVENTS.append("models:alpha")
apps.register_model("alpha", Post)
