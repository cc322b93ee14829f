"""Run the benchmarks: ``python -m bench.run [--quick] [section ...]`` from the repository root.

Sections run in a fixed order (``core`` first) in this one process; each is a module of
``bench/`` (see ``SECTIONS``) with a ``run()`` function, which receives ``quick=True`` when it
accepts a ``quick`` keyword and ``--quick`` was given. A section whose file does not exist is
reported as skipped; a section that fails prints its traceback, the others still run, and the
exit status is non-zero at the end.

Run as a module, the repository root is on ``sys.path`` and ``bench`` is a package of it. No
module of ``bench/`` is named after a package it measures (``http``, ``sqlalchemy``), so none
shadows one, without any change to ``sys.path``.
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
#: Section name -> module of bench/, in the order the sections run.
SECTIONS = {
    "core": "core",
    "http": "http_middleware",
    "sqlalchemy": "sqlalchemy_signals",
    "outbox": "outbox",
    "remote": "remote",
}


def _run_section(name: str, *, quick: bool) -> bool:
    """Run one section; return whether it succeeded (a missing module counts as success)."""
    module_name = SECTIONS[name]
    if not (BENCH / f"{module_name}.py").exists():
        print(f"== {name}: skipped: not present (bench/{module_name}.py)\n")
        return True
    print(f"== {name}")
    started = time.perf_counter()
    try:
        module = importlib.import_module(f"bench.{module_name}")
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
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.splitlines()[0]
    )
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
