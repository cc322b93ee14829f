"""A producer process for the queue fault test: sends ``joined`` until it is SIGKILLed.

``python -m tests.remote.producer FIRST`` in the environment of ``Site.env()``: for user ids
``FIRST``, ``FIRST + 1``, ... it prints the id, then in one transaction sends ``joined`` for it
and inserts a ``signups`` row holding the event id of its ``accounts.send_welcome`` delivery,
and commits. It never stops by itself: a row in ``signups`` is a committed send.
"""

from __future__ import annotations

import itertools
import sys

from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select

from tests.remote import remote_app
from tidings.outbox import writing_on

WELCOME = "accounts.send_welcome"
signups = Table(
    "signups",
    MetaData(),
    Column("user_id", Integer, primary_key=True),
    Column("event_id", String(64), nullable=False),
)


def main() -> None:
    """Send, commit, and again, until killed."""
    box = remote_app.outbox().install()
    pending = box.tables.pending
    newest = select(pending.c.event_id).where(pending.c.receiver == WELCOME)
    newest = newest.order_by(pending.c.id.desc()).limit(1)
    for user_id in itertools.count(int(sys.argv[1])):
        print(user_id, flush=True)
        with box.engine.begin() as conn, writing_on(conn):
            remote_app.joined.send(None, user_id=user_id)
            event_id = conn.scalar(newest)
            conn.execute(insert(signups).values(user_id=user_id, event_id=str(event_id)))


if __name__ == "__main__":
    main()
