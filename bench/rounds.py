"""Interleaved rounds, their spread and the load average: how every suite times its methods.

A shared machine's load drifts; timing A five times and then B five times puts the drift into
the ratio. Here each round runs every method once, in the same order (A B C A B C ...), each
call its own child process (the caller's ``run_child``), and a ratio is taken round by round,
between runs minutes apart at most, so what the machine did meanwhile mostly cancels:

    with LoadWatch() as load:
        runs = run_rounds({"stage": run_stage, "pillow": run_pillow}, rounds=5)
    rate = {method: [r.photos / r.seconds for r in done] for method, done in runs.items()}
    rows = [
        figure("photos pillow", rate["pillow"], "photos/s", load=load),
        compared("photos stage", rate["stage"], "photos/s", "photos pillow", rate["pillow"],
                 better="higher", load=load),
    ]

``figure`` and ``compared`` make bench/results.json rows (``bench.report.Measurement``): the
median as ``value``, ``low``/``high`` its range, ``rounds``, the one-minute load average at the
suite's start and end, and for ``compared`` the median of the per-round ratios with their range.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, TypeVar

from bench.report import Measurement

T = TypeVar("T")
Better = Literal["higher", "lower"]


@dataclass(frozen=True, slots=True)
class Spread:
    """The median of a method's rounds and their range."""

    median: float
    low: float
    high: float
    rounds: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("a spread needs at least one round")
        return cls(statistics.median(values), min(values), max(values), len(values))


def interleaved(methods: Sequence[str], rounds: int) -> list[tuple[int, str]]:
    """The order runs happen in: ``(round, method)``, every method once per round, A B C A B C."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, not {rounds}")
    if len(set(methods)) != len(methods):
        raise ValueError(f"a method is named twice in {list(methods)}")
    return [(index, method) for index in range(rounds) for method in methods]


def run_rounds(methods: Mapping[str, Callable[[], T]], *, rounds: int) -> dict[str, list[T]]:
    """Call each method once per round, interleaved, in the mapping's order; results by method.

    A method called later in a round may read what an earlier one returned in the same round
    (the video suite's ffmpeg takes its settings from the stage's first run).
    """
    results: dict[str, list[T]] = {method: [] for method in methods}
    for _, method in interleaved(list(methods), rounds):
        results[method].append(methods[method]())
    return results


def load_average() -> float:
    """The one-minute load average: how many runnable tasks were competing for the cores."""
    return os.getloadavg()[0]


class LoadWatch:
    """The one-minute load average when a suite starts and when it ends."""

    def __init__(self) -> None:
        self.start = load_average()
        self.end: float | None = None

    def __enter__(self) -> LoadWatch:
        self.start = load_average()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.end = load_average()

    @property
    def pair(self) -> tuple[float, float]:
        return (
            round(self.start, 2),
            round(self.end if self.end is not None else load_average(), 2),
        )


def figure(name: str, values: Sequence[float], unit: str, *, load: LoadWatch) -> Measurement:
    """A row with no reference: the median of the rounds and their range."""
    spread = Spread.of(values)
    return Measurement(
        name,
        spread.median,
        unit,
        low=spread.low,
        high=spread.high,
        rounds=spread.rounds,
        loadavg=load.pair,
    )


def compared(
    name: str,
    values: Sequence[float],
    unit: str,
    reference: str,
    reference_values: Sequence[float],
    *,
    better: Better,
    load: LoadWatch,
) -> Measurement:
    """A row against ``reference``, measured in the same rounds: above 1.0 means ours did better.

    The ratio is the median of the per-round ratios (round i against round i), not a ratio of
    medians, so it and its range come from the same pairs of neighbouring runs.
    """
    if len(values) != len(reference_values):
        raise ValueError(
            f"{name}: {len(values)} rounds against {len(reference_values)} of {reference}"
        )
    pairs = [
        (ours / theirs) if better == "higher" else (theirs / ours)
        for ours, theirs in zip(values, reference_values, strict=True)
    ]
    spread, ratio = Spread.of(values), Spread.of(pairs)
    return Measurement(
        name,
        spread.median,
        unit,
        reference,
        ratio.median,
        low=spread.low,
        high=spread.high,
        rounds=spread.rounds,
        loadavg=load.pair,
        ratio_low=ratio.low,
        ratio_high=ratio.high,
    )
