"""Helpers for testing code that sends or receives signals."""

from __future__ import annotations

__all__: list[str] = []
