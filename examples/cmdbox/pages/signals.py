"""Drop the cached pages that show a post when the post is saved or deleted.

The sender is the lazy reference ``"blog.Post"``: the receiver is connected once the blog's
``Post`` model is registered, and this app never imports the blog.
"""

from __future__ import annotations

import logging
from typing import Any

from pages.cache import cache
from pages.views import post_path
from tidings import receiver
from tidings.models import post_delete, post_save

logger = logging.getLogger(__name__)


@receiver([post_save, post_delete], sender="blog.Post")
def invalidate_post_pages(sender: type, instance: Any, **kwargs: Any) -> None:
    """Drop the post's own page and the index, which lists every post."""
    dropped = cache.delete(post_path(instance.slug), "/")
    logger.info("dropped from the cache: %s", ", ".join(dropped) or "nothing (not cached)")
