"""The blog's own receiver: a pre_save receiver may still change what is written."""

from __future__ import annotations

import logging
import re
from typing import Any

from blog.models import Post
from tidings import receiver
from tidings.models import pre_save

logger = logging.getLogger(__name__)


def slugify(text: str) -> str:
    """``"Hello, World!"`` -> ``"hello-world"``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@receiver(pre_save, sender=Post)
def fill_slug(sender: type[Post], instance: Post, **kwargs: Any) -> None:
    """Derive the slug from the title of a post that has none yet."""
    if not instance.slug:
        instance.slug = slugify(instance.title)
        logger.info("slug set to %r", instance.slug)
