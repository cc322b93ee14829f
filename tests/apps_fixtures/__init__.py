"""Small importable apps for the registry tests; ``EVENTS`` records what they did, in order."""

from __future__ import annotations

EVENTS: list[str] = []

PREFIX = __name__ + "."


def forget_modules() -> None:
    """Drop the fixture apps from ``sys.modules`` so the next test imports them afresh.

    A fresh registry only learns about models whose modules run again, exactly like a
    process that starts over.
    """
    import sys

    for name in [name for name in sys.modules if name.startswith(PREFIX)]:
        del sys.modules[name]
    EVENTS.clear()
