"""A user and its profile (one-to-one), the models of the classic tutorial."""

from __future__ import annotations

import datetime

from database import Base
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship


class User(Base):
    """An account."""

    __tablename__ = "profiles_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    email: Mapped[str] = mapped_column(String(254), default="")
    # Deleting a user deletes its profile too, like Django's on_delete=CASCADE.
    profile: Mapped[Profile | None] = relationship(back_populates="user", cascade="all")

    def __repr__(self) -> str:
        return f"<User {self.id} {self.username!r}>"


class Profile(Base):
    """What the tutorial adds to a user: a bio, a location and a birth date."""

    __tablename__ = "profiles_profile"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("profiles_user.id"), unique=True)
    bio: Mapped[str] = mapped_column(String(500), default="")
    location: Mapped[str] = mapped_column(String(30), default="")
    birth_date: Mapped[datetime.date | None]
    user: Mapped[User] = relationship(back_populates="profile")

    def __repr__(self) -> str:
        # Profile(user=u) fills in user_id only when the flush writes the row.
        user_id = self.user_id if self.user_id is not None else getattr(self.user, "id", None)
        return f"<Profile {self.id} of user {user_id}>"
