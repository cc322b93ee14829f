"""The one error module: every error tidings raises is a TidingsError, drawn in its docstring."""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import re
from pathlib import Path

import pytest

import tidings
from tidings import _errors

SRC = Path(tidings.__file__).parent
# By the module's __all__, not __module__: tidings.apps renames the module of the errors it
# re-exports, so they print as tidings.apps names.
ERRORS = [getattr(_errors, name) for name in _errors.__all__]

# Raised on purpose as built-ins: ImportError names the extra to install, AssertionError is a
# failed test assertion (tidings.testing), AttributeError is the module ``__getattr__`` protocol,
# SystemExit is how the command line exits.
BUILTINS_KEPT = {"ImportError", "AssertionError", "AttributeError", "SystemExit"}


def test_every_error_is_a_tidings_error() -> None:
    """Each exception class of the error module derives from TidingsError."""
    assert ERRORS
    assert all(issubclass(error, tidings.TidingsError) for error in ERRORS)


def test_the_docstring_draws_the_hierarchy() -> None:
    """The module docstring's tree names every error once, under its actual parent."""
    drawn: dict[str, str | None] = {}
    parents: list[tuple[int, str]] = []
    doc = _errors.__doc__ or ""
    for line in doc.split("Hierarchy::", 1)[1].splitlines():
        match = re.match(r"^(\s*(?:[│ ]   )*)(?:[├└]── )?(\w+)(?:\((\w+)\))?", line)
        if not match or not inspect.isclass(getattr(_errors, match.group(2), None)):
            continue
        depth = match.start(2)
        while parents and parents[-1][0] >= depth:
            parents.pop()
        drawn[match.group(2)] = parents[-1][1] if parents else None
        parents.append((depth, match.group(2)))
    actual = {
        error.__name__: next((b.__name__ for b in error.__bases__ if b in ERRORS), None)
        for error in ERRORS
    }
    assert drawn == actual


def test_every_error_keeps_a_builtin_base_where_the_docstring_says() -> None:
    """The built-in named in the tree (``TidingsTypeError(TypeError)``) is a real base."""
    doc = _errors.__doc__ or ""
    for name, base in re.findall(r"(\w+)\((\w+)\)", doc.split("Hierarchy::", 1)[1]):
        cls = getattr(_errors, name)
        expected = getattr(builtins, base, None) or getattr(_errors, base)
        assert issubclass(cls, expected), (name, base)


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("tidings", ["AppKindError", "InvalidReceiverError", "TidingsError", "TidingsTypeError"]),
        ("tidings.apps", ["AppRegistryNotReady", "ImproperlyConfigured", "RegistryError"]),
        (
            "tidings.sqlalchemy",
            [
                "AmbiguousSessionError",
                "AppLabelError",
                "FlushLoopError",
                "InstrumentError",
                "UpdateFieldsError",
            ],
        ),
        ("tidings.outbox", ["PayloadTypeError", "RelayBusyError"]),
    ],
)
def test_errors_are_importable_where_users_import_them(module: str, names: list[str]) -> None:
    """The errors are re-exported, as the same classes, from the modules users import."""
    imported = importlib.import_module(module)
    for name in names:
        assert getattr(imported, name) is getattr(_errors, name)
        assert name in imported.__all__


def _raised_builtins() -> list[str]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                func = node.exc.func
                name = func.id if isinstance(func, ast.Name) else None
                if name in vars(builtins) and name not in BUILTINS_KEPT:
                    found.append(f"{path.relative_to(SRC)}:{node.lineno}: {name}")
    return found


def test_no_bare_builtin_error_is_raised() -> None:
    """No module of the package raises a built-in exception where a TidingsError belongs."""
    assert _raised_builtins() == []


# An error named by its dotted path, in a docstring (":class:`~tidings.outbox.RelayBusyError`")
# or in the docs ("`tidings.DeliveryOptionsError`").
ERROR_PATH = re.compile(r"\btidings(?:\.[a-z_]+)*\.[A-Z]\w*(?:Error|Warning)\b")


def _error_paths() -> list[tuple[str, str]]:
    pages = [*sorted(SRC.rglob("*.py")), *sorted((SRC.parents[1] / "docs").glob("*.md"))]
    return [
        (path.name, match.group())
        for path in pages
        for match in ERROR_PATH.finditer(path.read_text(encoding="utf-8"))
    ]


def _resolves(dotted: str) -> bool:
    module, _, name = dotted.rpartition(".")
    try:
        return hasattr(importlib.import_module(module), name)
    except ImportError:
        return False


def test_errors_named_by_their_path_are_found_there() -> None:
    """Every ``tidings...SomeError`` that a docstring or a docs page names can be imported from
    the module it names."""
    named = _error_paths()
    assert [(page, dotted) for page, dotted in named if not _resolves(dotted)] == []
    assert ("_handler.py", "tidings.outbox.PayloadTypeError") in named  # the pattern finds them
