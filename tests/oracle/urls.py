"""URLs of the Django oracle for the request-signal differential tests."""

from __future__ import annotations

from typing import Any

urlpatterns: list[Any] = []
