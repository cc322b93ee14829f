"""Counting the instructions a region of a worker process executes, with valgrind's callgrind.

Wall and CPU times on a shared machine move by several percent between two identical runs; a
cost of a microsecond per row of a 30-microsecond insert is below that. The number of
instructions a deterministic workload executes does not depend on the load of the machine, so
two identical processes count within a few parts in ten thousand of each other, and a
difference of a thousand instructions per row is resolved on any machine.

How a region is delimited, without compiling anything into the worker:

* the worker runs under ``valgrind --tool=callgrind --instr-atstart=no``: uninstrumented, at
  about a tenth of its native speed instead of a fiftieth, so importing and setting up cost
  little;
* the parent switches instrumentation on (``callgrind_control -i on``) once the worker is set
  up and warm, and off again when it has asked for every measured operation;
* the worker calls :data:`MARK` (``os.getppid``, which nothing else here calls) before and
  after each region; callgrind runs with ``--dump-before=getppid``, so each call writes the
  counts collected since the previous one to a file of its own and zeroes them.

Dump ``2k`` (callgrind numbers them from 1) then holds what ran between the two marks of the
``k``-th region; the odd ones hold what ran before and between regions.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

__all__ = ["MARK", "Callgrind", "find"]

#: The call that delimits a region (a libc function, so callgrind sees it by name).
MARK = os.getppid
_MARKED_FUNCTION = "getppid"
_TOTALS = re.compile(rb"^(?:totals|summary): (\d+)", re.MULTILINE)


def find() -> str | None:
    """Why instructions cannot be counted here, or ``None`` when valgrind's tools are present."""
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not on PATH"
    return None


class Callgrind:
    """One worker process's command line under callgrind, and the counts it left behind.

    Args:
        directory: Where callgrind writes its dump files (one per region boundary).
        name: A file name prefix for this worker's dumps, unique within ``directory``.
    """

    def __init__(self, directory: Path, name: str) -> None:
        self.out = directory / f"{name}.callgrind"
        self.pid = 0

    def prefix(self) -> list[str]:
        """The words to put in front of the worker's own command line."""
        return [
            "valgrind",
            "--quiet",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--dump-before={_MARKED_FUNCTION}",
            f"--callgrind-out-file={self.out}",
        ]

    def instrument(self, on: bool) -> None:
        """Switch instrumentation of the worker (whose process id is ``pid``) on or off."""
        result = subprocess.run(
            ["callgrind_control", "--instr=" + ("on" if on else "off"), str(self.pid)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0 or "OK" not in result.stdout:
            raise RuntimeError(
                f"callgrind_control could not reach process {self.pid}: "
                f"{(result.stdout + result.stderr).strip()!r}"
            )

    def regions(self, count: int) -> list[int]:
        """The instructions of each of the ``count`` regions, read once the worker has exited.

        Raises:
            RuntimeError: If the dumps are not the ``2 * count`` the regions leave (some other
                code called the marked function, or instrumentation was off at a mark).
        """
        dumps = sorted(self.out.parent.glob(f"{self.out.name}.*"), key=lambda p: int(p.suffix[1:]))
        if len(dumps) != 2 * count:
            raise RuntimeError(
                f"callgrind left {len(dumps)} dumps in {self.out.parent}, expected "
                f"{2 * count} for {count} regions"
            )
        return [_instructions(dump) for dump in dumps[1::2]]


def _instructions(dump: Path) -> int:
    match = _TOTALS.search(dump.read_bytes())
    if match is None:
        raise RuntimeError(f"no instruction total in {dump}")
    return int(match.group(1))
