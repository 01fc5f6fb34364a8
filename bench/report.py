"""Measurements, the results file and the table ``make bench`` prints.

Every measurement names the reference it was compared with in the same run; ``ratio`` is
oriented so that above 1.0 means mediamill did better (faster, or more photos per second).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True, slots=True)
class Measurement:
    """One figure: ``{name, value, unit, reference, ratio}`` in bench/results.json."""

    name: str
    value: float
    unit: str
    reference: str | None = None
    ratio: float | None = None


@dataclass(frozen=True, slots=True)
class ChildRun:
    """Wall-clock seconds and peak resident memory of one child process."""

    seconds: float
    peak_rss_mb: float
    stdout: str


def run_child(argv: Sequence[str], *, env: dict[str, str] | None = None) -> ChildRun:
    """Run ``argv`` to completion: wall-clock seconds and its own peak RSS (see bench.rss)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, "-m", "bench.rss", *argv], stdout=out, stderr=err, env=env, check=False
        )
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        errors = err.read()
        if completed.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({completed.returncode}):\n{errors[-2000:]}")
        peak = errors.rstrip().rsplit("peak_rss_kib=", 1)[-1]
        return ChildRun(seconds=seconds, peak_rss_mb=int(peak) / 1024, stdout=out.read())


def python_child(module: str, *args: str) -> list[str]:
    """argv running one of the bench modules in a fresh interpreter."""
    return [sys.executable, "-m", module, *args]


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """CPU time this process has used so far, user and system, summed over its threads."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_results(measurements: Sequence[Measurement], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(m) for m in measurements], indent=2) + "\n")


def print_table(measurements: Sequence[Measurement], *, title: str) -> None:
    table = Table(title=title)
    for column in ("benchmark", "value", "unit", "reference", "ratio"):
        table.add_column(column, justify="right" if column in ("value", "ratio") else "left")
    for m in measurements:
        table.add_row(
            m.name,
            f"{m.value:.3g}" if abs(m.value) < 1000 else f"{m.value:.0f}",
            m.unit,
            m.reference or "",
            f"{m.ratio:.2f}x" if m.ratio is not None else "",
        )
    Console().print(table)


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))
