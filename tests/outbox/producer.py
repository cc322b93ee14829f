"""A producer process for the fault tests: commits sends, then kills itself with SIGKILL.

``python -m tests.outbox.producer URL COUNT``: COUNT Session transactions, each sending
``welcomed`` (one durable receiver, ``accounts.send_welcome``); right after the last COMMIT the
process SIGKILLs itself, before anything could run the receivers. It prints each event id once
its transaction committed.
"""

from __future__ import annotations

import os
import signal
import sys

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from tests.outbox.worker_app import welcomed
from tidings.outbox import Outbox


def main() -> None:
    """Send, then die."""
    url, count = sys.argv[1], int(sys.argv[2])
    box = Outbox(create_engine(url)).install()
    pending = box.tables.pending
    with Session(box.engine) as session:
        for n in range(count):
            with session.begin():
                welcomed.send(None, user_id=n)
                event_id = session.scalar(
                    select(pending.c.event_id).order_by(pending.c.id.desc()).limit(1)
                )
            sys.stdout.write(f"{event_id}\n")
            sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main()
