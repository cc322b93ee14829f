"""The declarative base every app's models share, instrumented to send Django's model signals."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from tidings.sqlalchemy import instrument


class Base(DeclarativeBase):
    """The base of the project's models; each model's app label comes from its app package."""


# Once, before any model is defined: every class mapped under Base then sends pre_save,
# post_save, pre_delete, post_delete... and is registered as "<app_label>.<Model>".
instrument(Base)
