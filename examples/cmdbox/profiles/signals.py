"""Keep a Profile next to every User, as in the classic Django tutorial.

Django's version::

    @receiver(post_save, sender=User)
    def create_user_profile(sender, instance, created, **kwargs):
        if created:
            Profile.objects.create(user=instance)

    @receiver(post_save, sender=User)
    def save_user_profile(sender, instance, **kwargs):
        instance.profile.save()

With SQLAlchemy the receivers add to the instance's session instead of writing themselves:
tidings flushes what ``post_save`` receivers leave pending within the same ``commit()``.

The welcome mail must not go out for a signup that is rolled back, so its receiver is connected
with ``delivery="on_commit"``: tidings calls it after the commit of the flush that sent
``post_save``, and never if that transaction is rolled back (Django::

    @receiver(post_save, sender=User)
    def send_welcome_mail(sender, instance, created, **kwargs):
        if created:
            transaction.on_commit(lambda: send_mail(...))
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import object_session

from profiles.models import Profile, User
from tidings import receiver
from tidings.models import post_save
from tidings.sqlalchemy import save

logger = logging.getLogger(__name__)

#: The addresses welcomed so far (a real project would hand the mail to its mailer).
outbox: list[str] = []


@receiver(post_save, sender=User)
def create_user_profile(sender: type[User], instance: User, created: bool, **kwargs: Any) -> None:
    """Give a newly created user its profile."""
    if created:
        # Django: Profile.objects.create(user=instance).
        session = object_session(instance)
        assert session is not None
        session.add(Profile(user=instance))
        logger.info("added a Profile for %r", instance)


@receiver(post_save, sender=User)
def save_user_profile(sender: type[User], instance: User, **kwargs: Any) -> None:
    """Save the user's profile whenever the user is saved."""
    session = object_session(instance)
    if session is not None and instance.profile is not None:
        # flush=False: we are inside a flush; the profile is written right after it.
        save(session, instance.profile, flush=False)
        logger.info("saving %r too", instance.profile)


@receiver(post_save, sender=User, delivery="on_commit")
def send_welcome_mail(sender: type[User], instance: User, created: bool, **kwargs: Any) -> None:
    """Welcome a new user by mail once the signup is committed; never if it is rolled back.

    Called after the commit, with the arguments ``post_save`` was sent with (here: note the
    mail in the outbox; a real project would hand it to its mailer).
    """
    if created:
        outbox.append(instance.email)
        logger.info("welcome mail sent to %s", instance.email)
