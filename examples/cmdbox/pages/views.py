"""Two pages built from the blog's posts, cached until a receiver drops them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pages.cache import cache
from tidings.apps import apps


def post_path(slug: str) -> str:
    """The path of the page showing the post with this slug."""
    return f"/posts/{slug}/"


def render(session: Session, path: str) -> tuple[str, bool]:
    """Return the page at ``path`` and whether it came from the cache.

    Raises:
        LookupError: If no page lives at ``path``.
    """
    cached = cache.get(path)
    if cached is not None:
        return cached, True
    # The model is looked up in the app registry, so this app needs no import of the blog.
    post_model: Any = apps.get_model("blog.Post")
    if path == "/":
        titles = session.scalars(select(post_model.title).order_by(post_model.id)).all()
        html = "<ul>" + "".join(f"<li>{title}</li>" for title in titles) + "</ul>"
    else:
        slug = path.removeprefix("/posts/").removesuffix("/")
        post = session.scalars(select(post_model).where(post_model.slug == slug)).one_or_none()
        if post is None:
            raise LookupError(f"No page at {path!r}.")
        html = f"<h1>{post.title}</h1>"
    cache.set(path, html)
    return html, False
