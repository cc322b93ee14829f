"""The durable demo's application: users, and a welcome mail a worker sends for each new one.

``send_welcome_mail`` is connected to ``post_save`` of ``User`` with ``delivery="durable"``:
saving a new user stores the mail's delivery in the same transaction, and a worker
(``tidings worker welcome:outbox`` from this folder) sends it. The database is the SQLite file
named by ``WELCOME_DB``; every mail is a line appended to the file named by ``WELCOME_MAILS``
(``email event-id attempt``).
"""

from __future__ import annotations

import os
import time
from typing import Any

from sqlalchemy import String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tidings import receiver
from tidings.models import post_save
from tidings.outbox import Event, Outbox
from tidings.sqlalchemy import instrument


class Base(DeclarativeBase):
    """The demo's models."""


class User(Base):
    """A user who signed up."""

    __tablename__ = "users"
    __app_label__ = "welcome"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200))


instrument(Base)


@receiver(post_save, sender=User, delivery="durable", max_attempts=5, backoff=0.1)
def send_welcome_mail(instance: User, created: bool, event: Event, **kwargs: Any) -> None:
    """ "Send" the welcome mail of a new user: one line per mail (a slow mail server)."""
    if not created:
        return
    user = instance
    time.sleep(0.02)
    line = f"{user.email} {event.id} {event.attempt}\n".encode()
    fd = os.open(os.environ["WELCOME_MAILS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


engine = create_engine(f"sqlite:///{os.environ.get('WELCOME_DB', 'welcome.db')}")
outbox = Outbox(engine, metadata=Base.metadata).install()
