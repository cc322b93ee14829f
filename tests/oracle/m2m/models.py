"""Django twins of the many-to-many scenarios.

Each model here has an SQLAlchemy counterpart in ``tests/integrations/sqlalchemy/test_m2m*.py``
with the same table names, so the two logs of ``m2m_changed`` can be compared verbatim.
"""

from __future__ import annotations

from django.db import models


class Author(models.Model):
    """The target side of ``Book.authors``."""

    name = models.CharField(max_length=50, default="")


class Book(models.Model):
    """Declares ``authors``: changes made through ``book.authors`` have ``reverse=False``."""

    title = models.CharField(max_length=50, default="")
    authors = models.ManyToManyField(Author, related_name="books")


class Topic(models.Model):
    """The target side of ``Article.topics`` (a set collection on the SQLAlchemy side)."""


class Article(models.Model):
    """Declares ``topics``."""

    topics = models.ManyToManyField(Topic, related_name="articles")


class Person(models.Model):
    """A self-referential, non-symmetrical many-to-many: ``following`` and ``followers``."""

    following = models.ManyToManyField("self", symmetrical=False, related_name="followers")


class Member(models.Model):
    """The target side of ``Group.members``."""


class Group(models.Model):
    """Declares ``members`` through the explicit model ``Membership``."""

    members = models.ManyToManyField(Member, through="Membership", related_name="groups")


class Membership(models.Model):
    """The association model (an association class on the SQLAlchemy side)."""

    group = models.ForeignKey(Group, on_delete=models.CASCADE)
    member = models.ForeignKey(Member, on_delete=models.CASCADE)
    role = models.CharField(max_length=20, default="member")
