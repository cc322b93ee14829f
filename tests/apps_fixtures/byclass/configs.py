"""Configs named explicitly in installed apps."""

from __future__ import annotations

from tidings.apps import AppConfig


class ByClassConfig(AppConfig):
    """A config naming its app."""

    name = "tests.apps_fixtures.byclass"


class NoNameConfig(AppConfig):
    """A config that forgot its ``name``."""


class WrongNameConfig(AppConfig):
    """A config whose ``name`` is not importable."""

    name = "tests.apps_fixtures.does_not_exist"


class NotAConfig:
    """Not an AppConfig subclass at all."""
