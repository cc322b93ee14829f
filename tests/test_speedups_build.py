"""The build of the C accelerator: compiled where it can be, a pure install where it cannot.

These tests build the sdist and a wheel per installed CPython and install them into fresh
virtual environments, which takes minutes, so unlike the other ``packaging`` tests they run
only when selected: ``make packaging`` (``pytest -m packaging tests/test_speedups_build.py``);
CI runs it once, on its main Python. Each supported CPython found on this machine (on
``PATH`` or installed by pyenv) gets a wheel that must import the compiled module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUPPORTED = ("3.10", "3.11", "3.12", "3.13")
CHECK = (
    "import tidings; s = tidings.Signal(); s.connect(lambda **kw: 1, weak=False); "
    "assert len(s.send(None)) == 1; print(tidings.compiled)"
)

pytestmark = pytest.mark.packaging


@pytest.fixture(scope="module", autouse=True)
def _only_when_selected(request: pytest.FixtureRequest) -> None:
    """Skip unless ``-m packaging`` selected these tests."""
    if "packaging" not in (request.config.getoption("markexpr", "") or ""):
        pytest.skip("slow build test: run with make packaging")


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The source distribution built from this checkout."""
    out = tmp_path_factory.mktemp("sdist")
    _run(sys.executable, "-m", "build", "--sdist", "--outdir", str(out), str(ROOT))
    [path] = out.glob("tidings-*.tar.gz")
    return path


def _run(*command: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


def _fresh_venv(python: str, where: Path) -> Path:
    _run(python, "-m", "venv", str(where))
    return where / "bin" / "python"


def _python(version: str) -> str | None:
    """A working interpreter for ``version``, on PATH or under pyenv, or None.

    A pyenv shim is on PATH for every installed version but runs only the selected ones, so
    each candidate is tried before it is chosen.
    """
    candidates = [shutil.which(f"python{version}")]
    pyenv = shutil.which("pyenv")
    if pyenv is not None:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
        versions = Path(root.stdout.strip()) / "versions"
        candidates += [str(p) for p in sorted(versions.glob(f"{version}.*/bin/python"))]
    for candidate in filter(None, candidates):
        tried = subprocess.run([candidate, "-c", "pass"], capture_output=True, check=False)
        if tried.returncode == 0:
            return candidate
    return None


def test_sdist_carries_the_sources_and_the_repository_files(sdist: Path) -> None:
    """The sdist holds the C source, setup.py, the tests, docs, benchmarks and examples."""
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for expected in (
        "setup.py",
        "pyproject.toml",
        "README.md",
        "CHANGELOG.md",
        "src/tidings/_speedups.c",
        "src/tidings/_speedups.pyi",
        "src/tidings/py.typed",
        "tests/core/test_speedups.py",
        "docs/speedups.md",
        "bench/core.py",
        "examples/core_demo.py",
    ):
        assert expected in names, expected
    assert not [name for name in names if name.endswith((".so", ".pyc"))]


def test_sdist_installs_pure_without_a_compiler(sdist: Path, tmp_path: Path) -> None:
    """With a compiler that always fails, installing the sdist works and runs the pure path."""
    python = _fresh_venv(sys.executable, tmp_path / "venv")
    env = {**os.environ, "CC": "false", "CXX": "false", "LDSHARED": "false"}
    _run(str(python), "-m", "pip", "install", "--no-deps", "--no-cache-dir", str(sdist), env=env)
    clean = {k: v for k, v in os.environ.items() if k != "TIDINGS_NO_EXTENSIONS"}
    assert _run(str(python), "-c", CHECK, env=clean).split() == ["False"]


@pytest.mark.parametrize("version", SUPPORTED)
def test_wheel_imports_the_compiled_module(version: str, sdist: Path, tmp_path: Path) -> None:
    """A wheel built from the sdist on each installed CPython holds and uses the C module."""
    python = _python(version)
    if python is None:
        pytest.skip(f"Python {version} is not installed here")
    out = tmp_path / "wheels"
    _run(python, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-w", str(out), str(sdist))
    [wheel] = out.glob("tidings-*.whl")
    tag = f"cp{version.replace('.', '')}"
    assert f"-{tag}-{tag}-" in wheel.name
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "tidings = tidings.testing" in archive.read(entry_points).decode()
    assert [n for n in names if n.startswith("tidings/_speedups.") and n.endswith(".so")]
    assert "tidings/py.typed" in names
    assert "tidings/_speedups.c" not in names
    venv_python = _fresh_venv(python, tmp_path / "venv")
    _run(str(venv_python), "-m", "pip", "install", "--no-deps", str(wheel))
    clean = {k: v for k, v in os.environ.items() if k != "TIDINGS_NO_EXTENSIONS"}
    assert _run(str(venv_python), "-c", CHECK, env=clean).split() == ["True"]
