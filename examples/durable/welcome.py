"""The durable demo's application: users, a signup signal, a welcome mail sent by a worker.

The database is the SQLite file named by ``WELCOME_DB``; every mail is a line appended to the
file named by ``WELCOME_MAILS`` (``email event-id attempt``). A worker runs it with
``tidings worker welcome:outbox`` from this folder.
"""

from __future__ import annotations

import os
import time
from typing import Any

from sqlalchemy import String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tidings import Signal
from tidings.outbox import DurableReceiver, Event, Outbox


class Base(DeclarativeBase):
    """The demo's models."""


class User(Base):
    """A user who signed up."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200))


user_signed_up = Signal(name="welcome.user_signed_up")


def send_welcome_mail(sender: Any, user: User, event: Event, **kwargs: Any) -> None:
    """ "Send" the welcome mail: one line per mail, written at once (a slow mail server)."""
    time.sleep(0.02)
    line = f"{user.email} {event.id} {event.attempt}\n".encode()
    fd = os.open(os.environ["WELCOME_MAILS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


engine = create_engine(f"sqlite:///{os.environ.get('WELCOME_DB', 'welcome.db')}")
outbox = Outbox(
    engine,
    metadata=Base.metadata,
    receivers=[DurableReceiver(user_signed_up, "welcome.send_welcome_mail", send_welcome_mail)],
)
