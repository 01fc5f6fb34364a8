"""Measurements, the results file and the table ``make bench`` prints.

Every measurement names the reference it was compared with in the same run; ``ratio`` is
oriented so that above 1.0 means mediamill did better (faster, or more photos per second).
Figures timed in interleaved rounds (bench.rounds) carry their spread: ``value`` is the median,
``low``/``high`` the range, ``ratio_low``/``ratio_high`` the range of the per-round ratios, and
``loadavg`` the one-minute load average at the suite's start and end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True, slots=True)
class Measurement:
    """One figure, ``{name, value, unit, reference, ratio}`` in bench/results.json, with spread."""

    name: str
    value: float
    unit: str
    reference: str | None = None
    ratio: float | None = None
    low: float | None = None
    high: float | None = None
    rounds: int | None = None
    loadavg: tuple[float, float] | None = None
    ratio_low: float | None = None
    ratio_high: float | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Measurement:
        """A row of bench/results.json; one written before the spread was recorded reads too."""
        known = {f.name for f in fields(cls)}
        unknown = set(row) - known
        if unknown:
            raise TypeError(f"unknown field(s) {', '.join(sorted(unknown))}")
        values = dict(row)
        if values.get("loadavg") is not None:
            start, end = values["loadavg"]
            values["loadavg"] = (float(start), float(end))
        return cls(**values)


@dataclass(frozen=True, slots=True)
class ChildRun:
    """Wall-clock seconds, peak resident memory and CPU seconds of one child process."""

    seconds: float
    peak_rss_mb: float
    stdout: str
    cpu_seconds: float = 0.0


def run_child(argv: Sequence[str], *, env: dict[str, str] | None = None) -> ChildRun:
    """Run ``argv`` to completion: wall-clock seconds, its own peak RSS and CPU (see bench.rss)."""
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
        peak, cpu = child_usage(errors)
        return ChildRun(seconds, peak / 1024, out.read(), cpu)


def child_usage(stderr: str) -> tuple[int, float]:
    """bench.rss's last line: the child's peak RSS in KiB and its CPU seconds."""
    # Split on the key, not on a newline: the child's own stderr may not end with one.
    peak, cpu = stderr.rstrip().rsplit("peak_rss_kib=", 1)[-1].split(" cpu_seconds=")
    return int(peak), float(cpu)


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


# The widest vector instructions the CPU offers, by /proc/cpuinfo's flag: libvips (Highway),
# libjpeg-turbo and FFmpeg pick their code by these at run time, so the same build can cost more CPU
# on a machine without AVX-512 than on one with it.
_VECTOR_SETS = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("sse4_2", "SSE4.2"))


def machine(cpuinfo: str | None = None) -> str:
    """The machine a figure was measured on: usable cores, CPU model, widest vector set."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model, flags = "unknown CPU", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == "unknown CPU":
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    vectors = next((name for flag, name in _VECTOR_SETS if flag in flags), None)
    described = f"{len(os.sched_getaffinity(0))} CPUs, {model}"
    return f"{described}, {vectors}" if vectors else described


def write_results(measurements: Sequence[Measurement], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(m) for m in measurements], indent=2) + "\n")


def print_table(measurements: Sequence[Measurement], *, title: str) -> None:
    table = Table(title=title, caption=_CAPTION)
    columns = ("benchmark", "median", "range", "unit", "reference", "ratio", "ratio range")
    for column in (*columns, "rounds", "load 1m"):
        table.add_column(column, justify="left" if column in ("benchmark", "unit") else "right")
    for m in measurements:
        table.add_row(*table_cells(m))
    Console(width=200).print(table)


_CAPTION = (
    "median of the rounds (interleaved, each method its own process); ratio: median of the"
    " per-round ratios, above 1.0 ours did better; load 1m: load average at the suite's start→end"
)


def table_cells(m: Measurement) -> list[str]:
    """The printed row: median, range, ratio and its range, rounds, the load average."""

    def number(value: float) -> str:
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"

    spread = (
        f"{number(m.low)}..{number(m.high)}" if m.low is not None and m.high is not None else ""
    )
    ratio = f"{m.ratio:.3f}x" if m.ratio is not None else ""
    ratio_range = ""
    if m.ratio_low is not None and m.ratio_high is not None:
        ratio_range = f"{m.ratio_low:.3f}..{m.ratio_high:.3f}"
    load = f"{m.loadavg[0]:.2f}→{m.loadavg[1]:.2f}" if m.loadavg is not None else ""
    rounds = str(m.rounds) if m.rounds is not None else ""
    return [
        m.name,
        number(m.value),
        spread,
        m.unit,
        m.reference or "",
        ratio,
        ratio_range,
        rounds,
        load,
    ]


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))
