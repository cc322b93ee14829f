"""A models module that re-enters populate() while phase 2 imports it."""

from __future__ import annotations

from tidings.apps import apps

apps.populate(["tests.apps_fixtures.plain"])
