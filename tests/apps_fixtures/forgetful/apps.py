"""The forgetful app's config: ready() loses one receiver and keeps the other."""

from __future__ import annotations

from typing import Any

from tests.apps_fixtures import EVENTS
from tests.apps_fixtures.forgetful import order_placed
from tidings import receiver
from tidings.apps import AppConfig


class ForgetfulConfig(AppConfig):
    """Connects two nested functions; only the one stored on the config survives ready()."""

    name = "tests.apps_fixtures.forgetful"

    def ready(self) -> None:
        """Connect ``lost`` (held by nobody) and ``kept`` (held by the config)."""

        @receiver(order_placed)  # lost receiver
        def lost(**kwargs: Any) -> None:
            EVENTS.append("lost")

        @receiver(order_placed)
        def kept(**kwargs: Any) -> None:
            EVENTS.append("kept")

        self.kept = kept
