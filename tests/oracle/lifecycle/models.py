"""Django twins of the model-lifecycle scenarios (compared with tidings.sqlalchemy)."""

from __future__ import annotations

from django.db import models


class Person(models.Model):
    first_name = models.CharField(max_length=50)
    last_name = models.CharField(max_length=50, default="")

    class Meta:
        app_label = "lifecycle"


class ProxyPerson(Person):
    class Meta:
        app_label = "lifecycle"
        proxy = True


class Book(models.Model):
    title = models.CharField(max_length=50, default="")

    class Meta:
        app_label = "lifecycle"


class Page(models.Model):
    book = models.ForeignKey(Book, on_delete=models.CASCADE)
    number = models.IntegerField(default=0)

    class Meta:
        app_label = "lifecycle"


class Note(models.Model):
    page = models.ForeignKey(Page, on_delete=models.CASCADE)
    text = models.CharField(max_length=50, default="")

    class Meta:
        app_label = "lifecycle"


class Review(models.Model):
    book = models.ForeignKey(Book, on_delete=models.SET_NULL, null=True)
    stars = models.IntegerField(default=0)

    class Meta:
        app_label = "lifecycle"


class Place(models.Model):
    name = models.CharField(max_length=50)

    class Meta:
        app_label = "lifecycle"


class Restaurant(Place):
    serves = models.CharField(max_length=50, default="")

    class Meta:
        app_label = "lifecycle"


class User(models.Model):
    name = models.CharField(max_length=50)

    class Meta:
        app_label = "lifecycle"


class Profile(models.Model):
    # The classic tutorial's one-to-one: ``user.profile`` is the reverse side.
    user = models.OneToOneField(User, on_delete=models.CASCADE)

    class Meta:
        app_label = "lifecycle"
