"""Durable delivery in action: welcome mails survive a worker killed in the middle.

Run ``python examples/durable/demo.py`` (or ``make demo``). Everything runs on a SQLite file
in a temporary folder, no server: 30 users sign up, each saved in a transaction in which
``post_save`` stores the welcome mail's delivery (``delivery="durable"``, see ``welcome.py``); a
worker process starts sending, is killed with SIGKILL halfway; a second worker finishes the job.
The printout counts users and mails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
USERS = 30
LEASE = "1"


def mails(path: Path) -> list[list[str]]:
    """The mails sent so far: ``[email, event id, attempt]`` each."""
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines()]


def worker(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """Start ``python -m tidings worker welcome:outbox`` in this folder."""
    command = [sys.executable, "-m", "tidings", "worker", "welcome:outbox", "--lease", LEASE]
    return subprocess.Popen(
        [*command, "--poll", "0.05", "--batch-size", "5", *args], cwd=HERE, env=env, text=True
    )


def main() -> None:
    """Sign users up, kill a worker halfway, let another one finish, count."""
    with tempfile.TemporaryDirectory() as folder:
        env = dict(os.environ, WELCOME_DB=f"{folder}/welcome.db", WELCOME_MAILS=f"{folder}/mails")
        os.environ.update(env)
        sys.path.insert(0, str(HERE))
        from sqlalchemy.orm import Session
        from welcome import User, engine, outbox

        outbox.metadata.create_all(engine)
        with Session(engine) as session:
            for n in range(USERS):
                with session.begin():  # the user and its mail's delivery commit together
                    session.add(User(id=n + 1, email=f"user{n + 1}@example.com"))
        print(f"{USERS} users signed up; {outbox.status().pending} welcome mails stored")

        log = Path(folder) / "mails"
        first = worker(env, "--quiet")
        while len(mails(log)) < USERS // 2 and first.poll() is None:
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait()
        sent_by_first = len(mails(log))
        print(f"worker 1 sent {sent_by_first} mails, then was killed with SIGKILL")

        time.sleep(float(LEASE))  # the killed worker's leases expire
        second = worker(env, "--once", "--quiet")
        second.wait()
        sent = mails(log)
        print(f"worker 2 sent {len(sent) - sent_by_first} mails")

        emails = Counter(mail[0] for mail in sent)
        missing = USERS - len(emails)
        twice = sum(n - 1 for n in Counter(mail[1] for mail in sent).values())
        later = sum(int(mail[2]) > 1 for mail in sent)
        print(f"users: {USERS}, welcomed: {len(emails)}, not welcomed: {missing}")
        print(f"mails: {len(sent)}; sent twice (the same event id again): {twice}")
        print(f"sent on a later attempt (the killed worker's claim cut off): {later}")
        print("at least once, never lost")
        engine.dispose()
        if missing:
            raise SystemExit("a user got no welcome mail")


if __name__ == "__main__":
    main()
