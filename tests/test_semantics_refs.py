"""The statement numbers the tests cite (``#n``) resolve to docs/semantics.md."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEMANTICS = ROOT / "docs" / "semantics.md"
# A citation is "#n" for a small n; Django tickets are written "ticket #35801".
CITATION = re.compile(r"(?<!ticket )#(\d{1,2})\b")


def _numbered() -> list[int]:
    text = SEMANTICS.read_text(encoding="utf-8")
    return [int(n) for n in re.findall(r"^(\d+)\. ", text, re.MULTILINE)]


def test_the_statements_are_numbered_in_order() -> None:
    """docs/semantics.md numbers its statements 1, 2, 3, ... with none missing or repeated."""
    numbers = _numbered()
    assert numbers == list(range(1, len(numbers) + 1))


def test_every_cited_statement_exists() -> None:
    """Each ``#n`` a core test cites is a statement of docs/semantics.md."""
    known = set(_numbered())
    cited = {
        (path.name, int(n))
        for path in (ROOT / "tests" / "core").glob("test_*.py")
        for n in CITATION.findall(path.read_text(encoding="utf-8"))
    }
    assert cited
    assert sorted(c for c in cited if c[1] not in known) == []
