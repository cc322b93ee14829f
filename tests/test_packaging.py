"""The distributions: what the sdist and the wheel hold, and what installing the wheel gives.

The sdist and the wheel are built once with ``python -m build``, whichever backend pyproject
names (without an isolated environment when that backend is installed here). The wheel is
then installed into fresh virtual environments: one without extras (``--no-deps``, nothing
else needed) and one with every extra the wheel declares plus pytest. That one installs with
``--no-index`` from a wheelhouse kept beside the running interpreter, filled from the package
index the first time (or when a dependency changes), so only the first run reaches the index.

These tests are marked ``packaging``: CI runs them once, on its main Python.
"""

from __future__ import annotations

import email.message
import email.parser
import os
import re
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parent.parent
WHEELHOUSE = Path(sys.prefix) / "tidings-test-wheelhouse"
INSTALL_HINT = re.compile(r'pip install "tidings\[(\w+)\]"')


@dataclass(frozen=True)
class Dists:
    """The built distributions and what the wheel says about itself."""

    sdist: Path
    wheel: Path
    metadata: email.message.Message
    modules: tuple[str, ...]  # the public modules in the wheel, "tidings" first
    entry_points: str


def _run(*args: str | Path, cwd: Path | None = None, timeout: float = 300) -> str:
    """Run a command, returning its stdout; fail with its output when it fails."""
    done = subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}},
    )
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}",
            pytrace=False,
        )
    return done.stdout


def _public_modules(names: list[str]) -> tuple[str, ...]:
    modules = []
    for name in names:
        parts = name.removesuffix(".py").split("/")
        if not name.endswith(".py") or parts[0] != "tidings":
            continue
        if parts[-1] == "__init__":
            parts.pop()
        if not any(part.startswith("_") for part in parts[1:]):
            modules.append(".".join(parts))
    return tuple(sorted(modules, key=lambda m: (m != "tidings", m)))


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """The sdist and the wheel, built from this source tree."""
    out = tmp_path_factory.mktemp("dist")
    build = [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)]
    # Without isolation when the build backend is installed here (build checks that and
    # refuses otherwise): no environment to create, nothing to download.
    done = subprocess.run([*build, "--no-isolation"], capture_output=True, timeout=600)
    if done.returncode != 0:
        _run(*build, timeout=600)
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(archive.read(metadata_name).decode())
        (entry_name,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_points = archive.read(entry_name).decode()
    return Dists(sdist, wheel, metadata, _public_modules(names), entry_points)


def _venv(path: Path) -> Path:
    """A fresh virtual environment without pip (this interpreter's pip installs into it)."""
    _run(sys.executable, "-m", "venv", "--without-pip", path)
    return path / "bin" / "python"


def _pip_into(python: Path, *args: str | Path) -> None:
    _run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-compile", *args)


IMPORT_ALL = textwrap.dedent(
    """
    import importlib, json, sys
    results = {}
    for name in sys.argv[1:]:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            results[name] = "ImportError: " + str(exc)
        else:
            results[name] = module.__file__
    print(json.dumps(results))
    """
)


def _import_all(python: Path, modules: tuple[str, ...], cwd: Path) -> dict[str, str]:
    import json

    output = _run(python, "-c", IMPORT_ALL, *modules, cwd=cwd)
    return dict(json.loads(output))


# -- what the distributions hold -------------------------------------------------------------


def test_sdist_holds_the_license_the_docs_and_the_sources(dists: Dists) -> None:
    """The sdist carries LICENSE, README, pyproject and the package, and no virtualenv."""
    with tarfile.open(dists.sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    expected = {"LICENSE", "README.md", "pyproject.toml", "src/tidings/__init__.py"}
    assert expected <= names
    assert "src/tidings/py.typed" in names
    assert not [name for name in names if name.startswith((".venv", "dist/"))]


def test_wheel_holds_the_license_and_the_type_marker(dists: Dists) -> None:
    """The wheel's dist-info has the LICENSE text; the package has py.typed."""
    with zipfile.ZipFile(dists.wheel) as archive:
        names = archive.namelist()
        (license_name,) = [n for n in names if ".dist-info/" in n and n.endswith("/LICENSE")]
        assert archive.read(license_name) == (ROOT / "LICENSE").read_bytes()
    assert "tidings/py.typed" in names
    assert b"BSD 3-Clause License" in (ROOT / "LICENSE").read_bytes()


def test_metadata_declares_license_urls_and_extras(dists: Dists) -> None:
    """METADATA names the license, the project URLs and the extras, and no dev extra."""
    metadata = dists.metadata
    assert metadata["License-Expression"] == "BSD-3-Clause"
    urls = dict(entry.split(", ", 1) for entry in metadata.get_all("Project-URL", []))
    assert {"Homepage", "Documentation", "Repository", "Changelog", "Issues"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())
    extras = set(metadata.get_all("Provides-Extra", []))
    assert {"sqlalchemy", "flask"} <= extras
    assert "dev" not in extras
    requires = metadata.get_all("Requires-Dist", [])
    # AsyncSession needs greenlet, which SQLAlchemy installs only with its asyncio extra.
    assert any(
        r.startswith("sqlalchemy[asyncio]") and "extra == 'sqlalchemy'" in r.replace('"', "'")
        for r in requires
    ), requires
    assert not [r for r in requires if "extra" not in r]  # the core depends on nothing


def test_long_description_is_safe_off_the_repository(dists: Dists) -> None:
    """The long description is Markdown whose links are all absolute (they work on PyPI)."""
    metadata = dists.metadata
    assert metadata["Description-Content-Type"] == "text/markdown"
    body = metadata.get_payload()
    assert isinstance(body, str)
    assert body.startswith("# tidings")
    links = re.findall(r"\]\(([^)\s]+)\)", body)
    assert links
    relative = [link for link in links if not link.startswith(("https://", "#"))]
    assert relative == []
    repository = dict(e.split(", ", 1) for e in metadata.get_all("Project-URL", []))["Repository"]
    outside = [link for link in links if "tidings" in link and not link.startswith(repository)]
    assert outside == []


def test_the_pytest_plugin_entry_point_is_declared(dists: Dists) -> None:
    """The wheel declares the pytest11 entry point that loads tidings.testing."""
    assert re.search(r"\[pytest11\]\s+tidings = tidings\.testing\b", dists.entry_points)


# -- installing the wheel --------------------------------------------------------------------


def test_installed_without_extras_the_core_imports_and_integrations_say_what_to_install(
    dists: Dists, tmp_path: Path
) -> None:
    """Without extras every core module imports; each integration names its extra."""
    python = _venv(tmp_path / "bare")
    _pip_into(python, "--no-index", "--no-deps", dists.wheel)
    results = _import_all(python, dists.modules, tmp_path)
    failed = {name: text for name, text in results.items() if text.startswith("ImportError")}
    for name, text in failed.items():
        match = INSTALL_HINT.search(text)
        assert match, f"{name}: {text}"
    assert INSTALL_HINT.search(failed["tidings.flask"]).group(1) == "flask"  # type: ignore[union-attr]
    assert INSTALL_HINT.search(failed["tidings.sqlalchemy"]).group(1) == "sqlalchemy"  # type: ignore[union-attr]
    for name in ("tidings", "tidings.apps", "tidings.models", "tidings.testing", "tidings.http"):
        assert results[name].startswith(str(tmp_path / "bare")), results[name]
    version = _run(python, "-c", "import tidings; print(tidings.__version__)", cwd=tmp_path)
    assert version.strip() == dists.metadata["Version"]


def _install_from_wheelhouse(python: Path, *requirements: str) -> None:
    """Install from the local wheelhouse only; fill it from the index when it lacks a wheel."""
    args = ("--no-index", "--find-links", str(WHEELHOUSE), *requirements)
    if WHEELHOUSE.is_dir():
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(python),
                "install",
                "-q",
                "--no-compile",
                *args,
            ],
            capture_output=True,
            timeout=300,
        )
        if done.returncode == 0:
            return
    _run(sys.executable, "-m", "pip", "wheel", "-q", "-w", WHEELHOUSE, *requirements, timeout=900)
    try:
        _pip_into(python, *args)
    finally:
        # pip wheel copies the tidings wheel under test in too; kept, a later build of the same
        # version (new extras) would resolve with this one's metadata and miss their wheels.
        for stale in WHEELHOUSE.glob("tidings-*.whl"):
            stale.unlink()


PLUGIN_TEST = textwrap.dedent(
    """
    from tidings import Signal

    paid = Signal(name="paid")


    def test_fixtures_come_from_the_installed_plugin(signal_capture, mute_signals):
        calls = signal_capture(paid)
        paid.send(None, amount=3)
        calls.assert_sent_once_with(amount=3)
        mute_signals(paid)
    """
)


@pytest.fixture(scope="module")
def full_install(dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh environment with the wheel, every extra it declares, and pytest."""
    where = tmp_path_factory.mktemp("full")
    python = _venv(where / "venv")
    extras = ",".join(sorted(dists.metadata.get_all("Provides-Extra", [])))
    _install_from_wheelhouse(python, f"{dists.wheel}[{extras}]", "pytest")
    return python


def test_installed_with_every_extra_every_public_module_imports(
    dists: Dists, full_install: Path, tmp_path: Path
) -> None:
    """With the extras, each public module imports, and greenlet is there for AsyncSession."""
    results = _import_all(full_install, (*dists.modules, "greenlet"), tmp_path)
    failed = {name: text for name, text in results.items() if text.startswith("ImportError")}
    assert failed == {}
    venv = str(full_install.parent.parent)
    assert all(path.startswith(venv) for path in results.values()), results


def test_the_pytest_plugin_is_registered_from_the_wheel(full_install: Path, tmp_path: Path) -> None:
    """pytest in the fresh environment finds signal_capture and mute_signals by itself."""
    (tmp_path / "test_plugin.py").write_text(PLUGIN_TEST)
    output = _run(full_install, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=tmp_path)
    assert "1 passed" in output
