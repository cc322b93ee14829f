"""The modules of tidings import each other without a cycle, function-level imports included.

Every ``import`` statement of every module counts: at module level, inside functions, and
under ``if TYPE_CHECKING:``. ``from package import name`` is an edge to ``package.name`` when
that is a module (a ``.py`` file, a package, or a compiled extension), else to ``package``.
A module's implicit import of its parent packages is not an edge. The cycles not broken yet
would be listed below (``KNOWN_CYCLES``), each with why; there is none.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import tidings

Graph = dict[str, set[str]]

SOURCE = Path(tidings.__file__).resolve().parent

#: The cycles known and not yet broken, each with why: the test fails on any other cycle, and
#: on one of these once it is gone (then delete its entry).
KNOWN_CYCLES: set[tuple[str, ...]] = set()


def _tolerated(component: list[str]) -> bool:
    return tuple(component) in KNOWN_CYCLES


def modules_of(package: Path) -> dict[str, Path]:
    """Map the dotted name of every Python module under ``package`` to its file."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_module(name: str, modules: Mapping[str, Path], package: Path) -> bool:
    if name in modules:
        return True
    # A compiled extension (``_speedups``) is a module without Python source: its stub or
    # its shared library sits where the ``.py`` file would.
    parts = name.split(".")
    where = package.parent.joinpath(*parts[:-1])
    return any(where.glob(f"{parts[-1]}.*.so")) or where.joinpath(f"{parts[-1]}.pyi").exists()


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - node.level + 1]
        base = ".".join([*anchor, *([base] if base else [])])
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def import_graph(package: Path) -> Graph:
    """Return ``{module: modules it imports}`` for the modules under ``package``."""
    modules = modules_of(package)
    graph: Graph = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            targets = _targets(node, name, is_package)
            if isinstance(node, ast.ImportFrom):
                base, names = targets[0], targets[1:]
                as_modules = [t for t in names if _is_module(t, modules, package)]
                # ``from package import a, b``: an edge to each module named, and to the
                # package itself for any name that is not a module.
                targets = as_modules + ([base] if len(as_modules) < len(names) else [])
            for target in targets:
                if target not in modules and _is_module(target, modules, package):
                    continue  # a compiled extension imports no module of the package
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Return the strongly connected components of more than one module, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def _describe(graph: Graph, component: list[str]) -> str:
    members = set(component)
    edges = [f"{a} -> {b}" for a in component for b in sorted(graph[a] & members)]
    return "; ".join(edges)


def test_the_modules_of_tidings_import_each_other_without_a_cycle() -> None:
    """No module of tidings imports, directly or through others, a module that imports it."""
    graph = import_graph(SOURCE)
    assert "tidings.sqlalchemy._session" in graph
    found = cycles(graph)
    new = [c for c in found if not _tolerated(c)]
    assert new == [], "\n".join(_describe(graph, component) for component in new)
    gone = KNOWN_CYCLES - {tuple(c) for c in found}
    assert gone == set(), f"no longer a cycle, delete from KNOWN_CYCLES: {sorted(gone)}"


def test_the_cycle_finder_finds_a_cycle_of_a_synthetic_graph() -> None:
    """A three-module ring is found (and only it); a graph without a ring has no cycle."""
    ring = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(ring) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) == []


def test_a_function_level_import_cycle_in_a_package_is_found(tmp_path: Path) -> None:
    """Imports inside functions, relative ones and ``from pkg import mod`` close a cycle too."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "first.py").write_text("def f():\n    from pkg.sub import second\n")
    (package / "sub" / "second.py").write_text("from ..first import f\n")
    (package / "leaf.py").write_text("from pkg import first\n")
    graph = import_graph(package)
    assert graph["pkg.leaf"] == {"pkg.first"}
    assert cycles(graph) == [["pkg.first", "pkg.sub.second"]]
