"""An app whose own import fails: the error must propagate, not look like a wrong entry."""

from __future__ import annotations

import tests.apps_fixtures.no_such_dependency  # noqa: F401
