"""Blog posts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from database import Base
from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

if TYPE_CHECKING:
    from profiles.models import User


class Post(Base):
    """A post; its slug is filled in from the title when it is first saved."""

    __tablename__ = "blog_post"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(200), unique=True, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    author_id: Mapped[int] = mapped_column(ForeignKey("profiles_user.id"))
    # "User" is resolved by name in the shared registry: no import of profiles at runtime.
    author: Mapped[User] = relationship("User")

    def __repr__(self) -> str:
        return f"<Post {self.id} {self.title!r}>"
