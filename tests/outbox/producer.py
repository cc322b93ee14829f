"""A producer process for the fault tests: commits sends, then kills itself with SIGKILL.

``python -m tests.outbox.producer URL COUNT``: COUNT transactions, each storing one send for
``accounts.send_welcome``; right after the last COMMIT the process SIGKILLs itself, before
anything could run the receivers. It prints each event id before committing it.
"""

from __future__ import annotations

import os
import signal
import sys

from sqlalchemy import create_engine

from tests.outbox.worker_app import welcomed
from tidings.outbox import Outbox


def main() -> None:
    """Write the sends, then die."""
    url, count = sys.argv[1], int(sys.argv[2])
    box = Outbox(create_engine(url))
    for n in range(count):
        with box.engine.begin() as conn:
            event_id = box.write(
                welcomed, ["accounts.send_welcome"], None, {"user_id": n}, connection=conn
            )
        sys.stdout.write(f"{event_id}\n")
        sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main()
