"""Every public module has a sorted ``__all__`` naming exactly what it offers."""

from __future__ import annotations

import ast
import importlib
import logging
from pathlib import Path

import pytest

import tidings

SRC = Path(tidings.__file__).parent
PUBLIC_MODULES = [
    "tidings",
    *sorted(
        "tidings" + "".join(f".{part}" for part in path.relative_to(SRC).with_suffix("").parts)
        for path in SRC.rglob("*.py")
        if not any(part.startswith("_") for part in path.relative_to(SRC).with_suffix("").parts)
    ),
    *sorted(
        f"tidings.{path.parent.relative_to(SRC).as_posix().replace('/', '.')}"
        for path in SRC.rglob("__init__.py")
        if path.parent != SRC
        and not any(p.startswith("_") for p in path.parent.relative_to(SRC).parts)
    ),
]


def _offered(path: Path) -> set[str]:
    """The public names a module defines at top level; for a package, also its re-exports.

    A package's ``__init__`` offers what it imports from tidings' own modules. A plain module
    may import tidings names for its own use, so only what it defines counts.
    """
    package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif (
            package
            and isinstance(node, ast.ImportFrom)
            and (node.module or "").startswith("tidings")
        ):
            names.update(alias.asname or alias.name for alias in node.names)
    return {name for name in names if not name.startswith("_")}


def _isort_order(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions and other names.
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


def test_the_public_modules_are_found() -> None:
    """The walk finds the root package, the plain modules and the public subpackages."""
    assert {"tidings", "tidings.http", "tidings.sqlalchemy", "tidings.outbox"} <= set(
        PUBLIC_MODULES
    )


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_complete(name: str) -> None:
    """``__all__`` is sorted, every name in it exists, and it lists every public name."""
    module = importlib.import_module(name)
    assert module.__file__ is not None
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_isort_order)
    assert [n for n in exported if not hasattr(module, n)] == []
    offered = _offered(Path(module.__file__))
    # Not part of what a module offers: the submodules a package imports for its own use, the
    # module's logger (reached through logging by its name) and pytest hooks.
    offered = {
        n
        for n in offered
        if not isinstance(getattr(module, n, None), (type(tidings), logging.Logger))
        and not n.startswith("pytest_")
    }
    assert sorted(offered - set(exported)) == []
