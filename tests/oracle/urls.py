"""URLs of the Django oracle for the request-signal differential tests."""

from __future__ import annotations

from typing import Any

from django.urls import path

from tests.oracle import webviews

urlpatterns: list[Any] = [
    path("ok", webviews.ok),
    path("stream", webviews.stream),
    path("stream-error", webviews.stream_error),
    path("error", webviews.error),
]
