"""A tiny in-process page cache, standing in for Django's cache framework."""

from __future__ import annotations

__all__ = ["PageCache", "cache"]


class PageCache:
    """Rendered pages by path."""

    def __init__(self) -> None:
        """Start empty."""
        self._pages: dict[str, str] = {}

    def get(self, path: str) -> str | None:
        """Return the cached page at ``path``, or None."""
        return self._pages.get(path)

    def set(self, path: str, html: str) -> None:
        """Cache ``html`` as the page at ``path``."""
        self._pages[path] = html

    def delete(self, *paths: str) -> list[str]:
        """Drop the pages at ``paths``; return the paths that were cached."""
        return [path for path in paths if self._pages.pop(path, None) is not None]

    def items(self) -> list[tuple[str, str]]:
        """Every cached ``(path, html)``, in the order they were cached."""
        return list(self._pages.items())


cache = PageCache()
