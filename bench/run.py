"""Run the benchmarks: ``python bench/run.py [--quick] [section ...]``.

Sections run in a fixed order (``core`` first) in this one process; each is a module
``bench/<section>.py`` with a ``run()`` function, which receives ``quick=True`` when it accepts
a ``quick`` keyword and ``--quick`` was given. A section whose file does not exist is reported
as skipped; a section that fails prints its traceback, the others still run, and the exit
status is non-zero at the end.

The modules are imported as ``bench.<section>`` with the repository root on ``sys.path`` and
``bench/`` itself taken off it, so ``bench/http.py`` and ``bench/sqlalchemy.py`` never shadow
the standard library's ``http`` or the real ``sqlalchemy``.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
import time
import traceback
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SECTIONS = ("core", "http", "sqlalchemy", "outbox")


def _fix_path() -> None:
    # Running ``python bench/run.py`` puts bench/ first on sys.path, where http.py and
    # sqlalchemy.py would shadow the real modules for every import in the process.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
    sys.path.insert(0, str(ROOT))


def _run_section(name: str, *, quick: bool) -> bool:
    """Run one section; return whether it succeeded (a missing module counts as success)."""
    if not (BENCH / f"{name}.py").exists():
        print(f"== {name}: skipped: not present (bench/{name}.py)\n")
        return True
    print(f"== {name}")
    started = time.perf_counter()
    try:
        module = importlib.import_module(f"bench.{name}")
        run = module.run
        if quick and "quick" in inspect.signature(run).parameters:
            run(quick=True)
        else:
            run()
    except Exception:
        sys.stdout.flush()  # keep the traceback after the section's own output
        traceback.print_exc()
        sys.stderr.flush()
        print(f"== {name}: FAILED after {time.perf_counter() - started:.1f} s\n", flush=True)
        return False
    print(f"== {name}: done in {time.perf_counter() - started:.1f} s\n", flush=True)
    return True


def main(argv: list[str] | None = None) -> int:
    """Run the requested sections (all by default); return the exit status."""
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "sections",
        nargs="*",
        metavar="section",
        help=f"sections to run, in this order: {', '.join(SECTIONS)} (default: all)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a fast smoke run: fewer, shorter rounds"
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s): {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    requested = set(args.sections) or set(SECTIONS)
    _fix_path()
    started = time.perf_counter()
    failed = [
        name for name in SECTIONS if name in requested and not _run_section(name, quick=args.quick)
    ]
    print(f"bench: finished in {time.perf_counter() - started:.1f} s")
    if failed:
        print(f"failed sections: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
