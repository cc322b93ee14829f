"""A worker target whose receivers come from its outbox's ``apps=``, not from this module:
``tidings worker tests.outbox.apps_worker:outbox`` (on ``TIDINGS_TEST_OUTBOX_URL``)."""

from __future__ import annotations

import os

from sqlalchemy import create_engine

from tidings.outbox import Outbox


def outbox() -> Outbox:
    """The outbox, built when the worker asks for it; populating the registry is the worker's."""
    engine = create_engine(os.environ["TIDINGS_TEST_OUTBOX_URL"])
    return Outbox(engine, apps=["tests.outbox.mailing"])
