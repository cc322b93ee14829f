"""The instruction counts behind the sqlalchemy benchmark's per-row verdicts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import _callgrind
from bench._timing import Timing
from bench.sqlalchemy_signals import Counts, _print_time_verdicts, print_counts

needs_valgrind = pytest.mark.skipif(
    _callgrind.find() is not None, reason=f"cannot count instructions: {_callgrind.find()}"
)

# A worker with two marked regions, the second looping twice as long as the first.
_WORKER = """
import sys
from bench._callgrind import MARK

def spin(n):
    total = 0
    for i in range(n):
        total += i * i
    return total

spin(1000)  # warm: the interpreter specializes the loop before it is counted
print("ready", flush=True)
sys.stdin.readline()
for n in (20_000, 40_000):
    MARK()
    spin(n)
    MARK()
print("done", flush=True)
sys.stdin.readline()
"""


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory) -> _callgrind.Callgrind:
    """The worker above, run once under callgrind with its two regions instrumented."""
    counter = _callgrind.Callgrind(tmp_path_factory.mktemp("callgrind"), "worker")
    with subprocess.Popen(
        [*counter.prefix(), sys.executable, "-c", _WORKER],
        cwd=Path(__file__).resolve().parents[1],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        counter.pid = process.pid
        assert process.stdout.readline().strip() == "ready"
        counter.instrument(True)
        process.stdin.write("go\n")
        process.stdin.flush()
        assert process.stdout.readline().strip() == "done"
        counter.instrument(False)
        process.stdin.close()
        process.wait(timeout=120)
    return counter


@needs_valgrind
def test_each_marked_region_is_counted_on_its_own(counted: _callgrind.Callgrind) -> None:
    """A region doing twice the work of another counts about twice its instructions."""
    first, second = counted.regions(2)
    assert first > 20_000 * 10  # a loop iteration is tens of instructions, at the least
    assert 1.9 < second / first < 2.1


@needs_valgrind
def test_a_missing_region_is_an_error_not_a_wrong_count(counted: _callgrind.Callgrind) -> None:
    """Asking for more regions than the worker marked raises instead of misreading dumps."""
    with pytest.raises(RuntimeError, match="expected 6 for 3 regions"):
        counted.regions(3)


def test_valgrind_missing_from_path_is_reported_by_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without valgrind on PATH, find() says which tools are missing."""
    monkeypatch.setenv("PATH", str(tmp_path))
    assert _callgrind.find() == "valgrind and callgrind_control not on PATH"


def _counts(receiver_large: int) -> Counts:
    # Per contender and operation: instructions on 100 rows and on 200.
    plain = (1_000_000, 1_900_000)
    instructions = {
        (op, kind): plain
        for op in ("load", "insert")
        for kind in ("plain", "plain again", "instrumented")
    }
    for op in ("load", "insert"):
        instructions[op, "listener floor"] = (1_150_000, 2_150_000)
        instructions[op, "1 receiver"] = (1_300_000, receiver_large)
    return Counts(100, instructions)


def test_per_row_counts_are_the_slope_and_the_rest_is_fixed() -> None:
    """Per row is the difference of the two sizes over the extra rows; the rest is per operation."""
    counts = _counts(receiver_large=2_400_000)
    assert counts.per_row("load", "plain") == 9_000
    assert counts.fixed("load", "plain") == 100_000
    assert counts.added("load", "listener floor") == 1_000
    assert counts.added("load", "1 receiver") == 2_000
    assert counts.fixed("load", "1 receiver") == 200_000


@pytest.mark.parametrize(
    ("receiver_large", "verdict"),
    [(2_400_000, "MISS (tidings +2,000, floor +1,000"), (2_350_000, "PASS (tidings +1,500")],
    ids=["2.0x-misses", "1.5x-passes"],
)
def test_the_verdict_follows_the_ratio_of_added_instructions(
    receiver_large: int, verdict: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The per-row target passes up to 1.5x the floor's added instructions and misses above."""
    print_counts(_counts(receiver_large))
    lines = capsys.readouterr().out.splitlines()
    targets = [line for line in lines if line.startswith("target: ") and "per row" in line]
    assert len(targets) == 2
    assert all(verdict in line for line in targets)


@pytest.mark.parametrize(
    ("instrumented_large", "verdict"),
    [(1_990_000, "PASS (+4.74% instructions on 200 rows)"), (2_000_000, "MISS (+5.26%")],
    ids=["4.7%-passes", "5.3%-misses"],
)
def test_instrument_alone_is_judged_on_the_larger_operations_instructions(
    instrumented_large: int, verdict: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """With instructions counted, instrument() with no receivers passes up to +5% over plain."""
    counts = _counts(receiver_large=2_350_000)
    for op in ("load", "insert"):
        counts.instructions[op, "instrumented"] = (1_000_000, instrumented_large)
    print_counts(counts)
    lines = capsys.readouterr().out.splitlines()
    targets = [line for line in lines if "with instrument() and no receivers" in line]
    assert [line.split()[1] for line in targets] == ["load", "insert"]
    assert all(line.startswith("target: ") and verdict in line for line in targets)


def _timings(control_spread: float) -> dict[tuple[str, str], Timing]:
    # Nanoseconds per operation of 10,000 rows over 9 rounds: the floor adds 1 ms (100 ns a
    # row), tidings 1.2 ms; the control alternates around plain by +-control_spread.
    rounds = range(9)
    added = {"plain": 0.0, "instrumented": 0.0, "1 receiver": 1.2e6, "listener floor": 1e6}
    timings = {
        (op, kind): Timing([30e6 + extra for _ in rounds], number=1)
        for op in ("load", "insert")
        for kind, extra in added.items()
    }
    for op in ("load", "insert"):
        timings[op, "plain again"] = Timing(
            [30e6 + (control_spread if i % 2 else -control_spread) for i in rounds], number=1
        )
    return timings


@pytest.mark.parametrize(
    ("control_spread", "verdict"),
    [(10_000.0, "PASS"), (2e6, "UNRESOLVED")],
    ids=["quiet-control", "wide-control"],
)
def test_the_time_verdict_is_unresolved_when_the_control_is_too_wide(
    control_spread: float, verdict: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without instruction counts, the time verdict holds only when the control resolves it."""
    _print_time_verdicts(_timings(control_spread), counted=False)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("time, ")]
    assert len(lines) == 2
    assert all(
        f"floor's: {verdict} (tidings +120 ns, floor +100 ns, 1.20x" in line for line in lines
    )
