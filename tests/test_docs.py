"""Every Python sample of README.md and docs/ runs as written, and shows what it prints.

Samples are collected from README.md and every ``*.md`` under docs/ (new pages are picked up
by themselves). docs/README.md states the convention, in short: a ```` ```python ```` block is
a complete program and is executed on its own; a comment line ``# Output:`` followed by comment
lines gives what it prints (``...`` matches anything); a block starting with ``>>>`` is a
doctest. An HTML comment on the line before a block changes that:

* ``<!-- fragment -->``: a piece of a larger program; only compiled (it must be valid Python,
  where a top-level ``await`` is allowed);
* ``<!-- continue -->``: runs after the previous runnable block of the page, in its namespace;
* ``<!-- pytest -->``: a test module, run by pytest (with the tidings plugin); all must pass.
  ``<!-- pytest continue -->`` is a test module that starts with the blocks it continues;
* ``needs Python 3.11`` after the words above: skipped on older Pythons.

Each sample runs in an empty app registry, and every tidings signal gets its receivers back
afterwards, so samples cannot leak connections into each other or into other tests.
"""

from __future__ import annotations

import ast
import contextlib
import doctest
import io
import re
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import tidings.apps
from tidings import Signal
from tidings.apps import apps

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(
    r"^<!--\s*(?P<words>(?:(?:fragment|continue|pytest)\b[\s,]*)+)(?P<rest>.*?)\s*-->\s*$"
)
NEEDS = re.compile(r"needs Python (\d+)\.(\d+)")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
OUTPUT = "# Output:"
SAMPLE_MODULE = "docs_sample"
CHECKER = doctest.OutputChecker()
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@dataclass(frozen=True)
class Sample:
    """One fenced Python block of a Markdown page."""

    page: Path
    line: int  # of the first line of code, 1-based
    code: str
    kind: str  # "run", "fragment" or "pytest"
    previous: Sample | None  # the block this one continues, if it does
    needs: tuple[int, int] = (3, 0)  # the oldest Python it runs on

    @property
    def id(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page}:{self.line}"


def pages() -> list[Path]:
    """README.md and every Markdown page under docs/, in a stable order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def parse(page: Path) -> list[Sample]:
    """The Python blocks of ``page``, with the marker each one carries."""
    lines = page.read_text(encoding="utf-8").splitlines()
    samples: list[Sample] = []
    last_runnable: Sample | None = None
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        language = (opening["info"].split() or [""])[0]
        start = index + 1
        index = start
        while index < len(lines):
            closing = lines[index].strip()
            if closing.startswith(fence[0] * len(fence)) and not closing.strip(fence[0]):
                break
            index += 1
        body = "\n".join(line[indent:] for line in lines[start:index])
        index += 1
        if language not in {"python", "py"}:
            continue
        before = [line for line in lines[: start - 1] if line.strip()]
        marker = MARKER.match(before[-1].strip()) if before else None
        words = set(re.findall(r"\w+", marker["words"])) if marker else set()
        kind = "fragment" if "fragment" in words else "pytest" if "pytest" in words else "run"
        if "continue" in words and last_runnable is None:
            raise AssertionError(f"{page}:{start}: <!-- continue --> with nothing to continue")
        needs = NEEDS.search(marker["rest"]) if marker else None
        sample = Sample(
            page,
            start + 1,
            body + "\n",
            kind,
            last_runnable if "continue" in words else None,
            (int(needs[1]), int(needs[2])) if needs else (3, 0),
        )
        samples.append(sample)
        if kind == "run":
            last_runnable = sample
    return samples


SAMPLES = [sample for page in pages() for sample in parse(page)]


def expected_output(code: str) -> str | None:
    """The output a block shows after its ``# Output:`` line, or None when it shows none."""
    lines = code.splitlines()
    if OUTPUT not in (line.strip() for line in lines):
        return None
    at = [line.strip() for line in lines].index(OUTPUT)
    shown = []
    for line in lines[at + 1 :]:
        stripped = line.strip()
        if not stripped.startswith("#"):
            break
        shown.append(stripped[2:] if stripped.startswith("# ") else stripped[1:])
    return "\n".join(shown) + "\n"


@contextlib.contextmanager
def isolated() -> Iterator[None]:
    """An empty app registry; every tidings signal's receivers and the checks restored after."""
    signals = {
        id(value): value
        for name, module in list(sys.modules.items())
        if name == "tidings" or name.startswith("tidings.")
        for value in list(vars(module).values())
        if isinstance(value, Signal)
    }
    saved = [(signal, signal.receivers) for signal in signals.values()]
    checks = list(tidings.apps._checks)
    try:
        with apps.isolated():
            yield
    finally:
        for signal, receivers in saved:
            signal.receivers = receivers
        # Drop the checks a sample registered; keep those an integration loaded meanwhile
        # (its module is imported once, so it would never register them again).
        tidings.apps._checks[:] = [
            check
            for check in tidings.apps._checks
            if check in checks or getattr(check, "__module__", "").startswith("tidings.")
        ]


@contextlib.contextmanager
def sample_module() -> Iterator[types.ModuleType]:
    """A module to run a sample in, importable while it runs (SQLAlchemy resolves annotations
    through ``sys.modules[cls.__module__]``)."""
    module = types.ModuleType(SAMPLE_MODULE)
    sys.modules[SAMPLE_MODULE] = module
    try:
        yield module
    finally:
        del sys.modules[SAMPLE_MODULE]
        close_engines(module)


def close_engines(module: types.ModuleType) -> None:
    """Dispose of the SQLAlchemy engines a sample left in its namespace, as its process's exit
    would (Python 3.13 warns about SQLite connections that are garbage-collected open)."""
    engine_type = getattr(sys.modules.get("sqlalchemy.engine"), "Engine", None)
    if engine_type is None:
        return
    for value in list(vars(module).values()):
        if isinstance(value, engine_type):
            value.dispose()


def chain(sample: Sample) -> list[Sample]:
    """The blocks ``sample`` continues, first to last, then ``sample`` itself."""
    parts = []
    current: Sample | None = sample
    while current is not None:
        parts.append(current)
        current = current.previous
    return parts[::-1]


def run(sample: Sample) -> None:
    """Run ``sample``, after the blocks it continues, and check what each one prints."""
    with sample_module() as module:
        for part in chain(sample):
            if part.code.lstrip().startswith(">>>"):
                run_doctest(part, module)
                continue
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(part.code, part.id, "exec"), vars(module))
            shown = expected_output(part.code)
            if shown is not None and not CHECKER.check_output(shown, out.getvalue(), OPTIONS):
                raise AssertionError(
                    f"{part.id} shows this output:\n{shown}but printed:\n{out.getvalue()}"
                )


def run_doctest(sample: Sample, module: types.ModuleType) -> None:
    """Run a ``>>>`` block as a doctest in ``module``'s namespace."""
    test = doctest.DocTestParser().get_doctest(
        sample.code, vars(module), sample.id, str(sample.page), sample.line - 1
    )
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    out = io.StringIO()
    runner.run(test, out=out.write, clear_globs=False)
    assert runner.failures == 0, out.getvalue()


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.id for s in SAMPLES])
def test_sample_runs_as_written(
    sample: Sample, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sample runs (or, as a fragment, compiles) and prints what it shows."""
    monkeypatch.chdir(tmp_path)  # files a sample writes (an SQLite database) land there
    if sys.version_info < sample.needs:
        pytest.skip(f"the sample needs Python {'.'.join(map(str, sample.needs))}")
    if sample.kind == "fragment":
        # A fragment may await at top level, as code inside an async function would.
        compile(sample.code, sample.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        return
    if sample.kind == "pytest":
        pytester: pytest.Pytester = request.getfixturevalue("pytester")
        source = "".join(part.code for part in chain(sample))
        pytester.makepyfile(**{f"test_{sample.page.stem.replace('-', '_')}": source})
        with isolated():
            # Without hypothesis' plugin, which pytester would import afresh each time (seconds).
            result = pytester.runpytest_inprocess(
                "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-q"
            )
        outcomes = result.parseoutcomes()
        assert outcomes.get("passed", 0) > 0, result.stdout.str()
        assert set(outcomes) == {"passed"}, result.stdout.str()
        return
    with isolated():
        run(sample)


def test_every_page_has_its_samples_collected() -> None:
    """The collector sees README.md and each docs page, and finds samples in them."""
    seen = {sample.page for sample in SAMPLES}
    assert ROOT / "README.md" in seen
    assert (ROOT / "docs" / "usage.md") in seen
    assert len(SAMPLES) >= 20


def test_markers_only_precede_python_blocks() -> None:
    """A marker comment is followed by a Python block, so a misplaced one is not ignored."""
    misplaced = []
    for page in pages():
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            if not MARKER.match(line.strip()):
                continue
            after = [other for other in lines[number + 1 :] if other.strip()]
            opening = FENCE.match(after[0]) if after else None
            if opening is None or (opening["info"].split() or [""])[0] not in {"python", "py"}:
                misplaced.append(f"{page.relative_to(ROOT)}:{number + 1}")
    assert misplaced == []


def test_readme_links_work_off_the_repository() -> None:
    """README.md links absolutely (it is the package's page on the index) to files that exist."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert [link for link in links if not link.startswith(("https://", "#"))] == []
    base = "https://github.com/tidings-project/tidings/blob/main/"
    missing = [
        link
        for link in links
        if link.startswith(base) and not (ROOT / link.removeprefix(base).split("#")[0]).exists()
    ]
    assert missing == []


def test_cmdbox_postgresql_command_names_a_database_every_server_has() -> None:
    """The cmdbox README's PostgreSQL command uses the 'postgres' database that initdb creates."""
    text = (ROOT / "examples" / "cmdbox" / "README.md").read_text(encoding="utf-8")
    urls = re.findall(r"DATABASE_URL=(postgresql\S+)", text)
    assert urls
    assert all(url.rsplit("/", 1)[1] == "postgres" for url in urls)


PAGE = """\
# A page

```python
x = 1
```

<!-- continue -->
~~~~py
print(x + 1)
# Output:
# 2
~~~~

<!-- fragment: needs a session -->
```python
session.add(x)
```

<!-- pytest continue, needs Python 3.99 -->
```python
def test_x():
    assert x == 1
```

```sh
echo not python
```
"""


def test_the_collector_reads_markers_fences_and_output(tmp_path: Path) -> None:
    """parse() finds each Python block with its kind, what it continues and its Python."""
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    first, second, fragment, test = parse(page)
    assert (first.kind, first.previous, first.line, first.code) == ("run", None, 4, "x = 1\n")
    assert (second.kind, second.previous) == ("run", first)
    assert expected_output(second.code) == "2\n"
    assert expected_output(first.code) is None
    assert (fragment.kind, fragment.previous) == ("fragment", None)
    assert (test.kind, test.previous, test.needs) == ("pytest", second, (3, 99))
    assert chain(test) == [first, second, test]


def test_shown_output_that_differs_fails(tmp_path: Path) -> None:
    """A sample printing something else than its # Output: comment fails, saying both."""
    page = tmp_path / "page.md"
    page.write_text("```python\nprint('hello')\n# Output:\n# goodbye\n```\n")
    (sample,) = parse(page)
    with pytest.raises(AssertionError, match="shows this output:\ngoodbye\nbut printed:\nhello"):
        run(sample)
