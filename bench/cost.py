"""``python -m bench.cost``: what the measured work costs on AWS, from bench/results.json.

The bench measures CPU seconds: a 12 MP photo through the thumbnail stage, the same photo through
Pillow (the usual Lambda thumbnailer), a 1080p30 clip through the transcode stage. This turns
them into dollars at the published prices in bench/prices.json (region and date stated there):

- Fargate bills a task's vCPUs and memory for as long as it runs. Work of C CPU seconds keeps a
  task of V vCPUs and M GB busy for C / (V * U) seconds at utilisation U, so it costs
  C / (V * U) / 3600 * (V * vCPU-hour + M * GB-hour). The task size is the template's default
  (TaskCpu, TaskMemory); U is ours to state (``--utilisation``, 1.0: the work's own cost, at
  full use; a task's idle time is the fleet's cost, not the work's).
- Fargate Spot: the same at the largest discount AWS publishes ("up to 70%"): a lower bound.
- Lambda bills wall time at the memory size chosen, per millisecond, plus each request. At 1,769
  MB a function has one full vCPU, so a CPU-bound, single-threaded Pillow run takes its CPU
  seconds of wall time: billed ceil(ms) at 1,769 MB. Time spent on S3 is left out on both sides.
- MediaConvert bills minutes of output: one hour of our rendition (AVC, 720p, 30 fps) at the
  Basic tier's HD rate. The stage's poster and animated preview are not priced there.

``python -m bench`` runs this after the suites; alone, it reads an existing results file, prints
the table and writes its rows back into that file in place of earlier cost rows.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.prices import PRICES, CostError, Prices
from bench.report import Measurement
from bench.scaling.inputs import TEMPLATE

RESULTS = Path(__file__).with_name("results.json")

PHOTOS = 1000
VIDEO_SECONDS = 3600.0
PREFIX = "cost "  # every row this writes; a rerun replaces them
# The worker's own CPU outside the stages, per upload (ms): the worker suite's rows, when run.
# An hour of video is 3,600 / (the clip's seconds) uploads, each paying it once.
WORKER_PHOTO_CPU = "worker photo 12 MP own CPU/upload"
WORKER_VIDEO_CPU = "worker video 1080p own CPU/upload"


@dataclass(frozen=True, slots=True)
class TaskSize:
    vcpu: float
    memory_gb: float

    @classmethod
    def from_template(cls, path: Path = TEMPLATE) -> TaskSize:
        """The worker task's default size: TaskCpu in CPU units, TaskMemory in MiB."""
        from bench.scaling.inputs import InputError, parameter_default, read_template

        try:
            template = read_template(path)
            cpu, memory = (parameter_default(template, p) for p in ("TaskCpu", "TaskMemory"))
        except InputError as error:
            raise CostError(str(error)) from None
        if not cpu or not memory:
            raise CostError(f"{path}: TaskCpu and TaskMemory need defaults to price a task")
        return cls(vcpu=cpu / 1024, memory_gb=memory / 1024)


# --- the arithmetic ---------------------------------------------------------------------------


def fargate(
    cpu_seconds: float, task: TaskSize, prices: Prices, *, utilisation: float, spot: bool = False
) -> float | None:
    """What ``cpu_seconds`` of work costs on Fargate tasks of ``task``'s size."""
    vcpu_hour, gb_hour, discount = (
        prices[n] for n in ("fargate_vcpu_hour", "fargate_gb_hour", "fargate_spot_discount")
    )
    if vcpu_hour is None or gb_hour is None or (spot and discount is None):
        return None
    task_hours = cpu_seconds / (task.vcpu * utilisation) / 3600
    cost = task_hours * (task.vcpu * vcpu_hour + task.memory_gb * gb_hour)
    return cost * (1 - discount) if spot and discount is not None else cost


def lambda_pillow(cpu_seconds: float, invocations: int, prices: Prices) -> float | None:
    """``invocations`` runs of ``cpu_seconds`` each on a one-vCPU function, requests included."""
    gb_second, request, mb = (
        prices[n] for n in ("lambda_gb_second", "lambda_request", "lambda_one_vcpu_mb")
    )
    if gb_second is None or request is None or mb is None:
        return None
    billed = math.ceil(round(cpu_seconds * 1000, 6)) / 1000  # Lambda rounds up to the millisecond
    return invocations * (billed * mb / 1024 * gb_second + request)


def mediaconvert(video_seconds: float, prices: Prices, *, tier: str = "basic") -> float | None:
    rate = prices[f"mediaconvert_{tier}_hd_avc_minute"]
    return None if rate is None else video_seconds / 60 * rate


# --- from measurements to the table and rows --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """One work item priced every way that applies; None where a price could not be read."""

    kind: str  # "1,000 photos", "1 h of video"
    shape: str  # "stage", "stage + worker"
    cpu_seconds: float
    on_demand: float | None
    spot: float | None
    per_request: float | None  # Lambda for photos, MediaConvert for video
    per_request_name: str

    @property
    def work(self) -> str:
        return f"{self.kind}, {self.shape}"


def lines(
    figures: Mapping[str, float], prices: Prices, task: TaskSize, *, utilisation: float
) -> tuple[list[Line], list[str]]:
    """The priced lines these figures allow, and what is left out for want of a figure."""
    from bench.images import PHOTO_CPU, PILLOW_CPU
    from bench.video import VIDEO_CPU, VIDEO_LENGTH

    if not 0 < utilisation <= 1:
        raise CostError(f"utilisation must be within (0, 1], not {utilisation:g}")

    def on_fargate(cpu: float, spot: bool) -> float | None:
        return fargate(cpu, task, prices, utilisation=utilisation, spot=spot)

    priced: list[Line] = []
    skipped: list[str] = []
    photos = f"{PHOTOS:,} photos"
    if PHOTO_CPU in figures and PILLOW_CPU in figures:
        lam = lambda_pillow(figures[PILLOW_CPU], PHOTOS, prices)
        stage = PHOTOS * figures[PHOTO_CPU]
        shapes = [("stage", stage)]
        if WORKER_PHOTO_CPU in figures:
            shapes.append(("stage + worker", stage + PHOTOS * figures[WORKER_PHOTO_CPU]))
        for shape, cpu in shapes:
            cost, spot = on_fargate(cpu, False), on_fargate(cpu, True)
            priced.append(Line(photos, shape, cpu, cost, spot, lam, "Lambda"))
    else:
        skipped.append(f"photos: the results lack {_lacking(figures, PHOTO_CPU, PILLOW_CPU)}")
    hour = "1 h of video"
    if VIDEO_CPU in figures and VIDEO_LENGTH in figures:
        per_second = figures[VIDEO_CPU] / figures[VIDEO_LENGTH]
        shapes = [("stage", VIDEO_SECONDS * per_second)]
        if WORKER_VIDEO_CPU in figures:
            worker = figures[WORKER_VIDEO_CPU] / figures[VIDEO_LENGTH]
            shapes.append(("stage + worker", VIDEO_SECONDS * (per_second + worker)))
        mc = mediaconvert(VIDEO_SECONDS, prices)
        for shape, cpu in shapes:
            cost, spot = on_fargate(cpu, False), on_fargate(cpu, True)
            priced.append(Line(hour, shape, cpu, cost, spot, mc, "MediaConvert"))
    else:
        skipped.append(f"video: the results lack {_lacking(figures, VIDEO_CPU, VIDEO_LENGTH)}")
    return priced, skipped


def _lacking(figures: Mapping[str, float], *names: str) -> str:
    return ", ".join(repr(n) for n in names if n not in figures)


def measurements(priced: Sequence[Line], prices: Prices) -> list[Measurement]:
    """Rows for results.json; ratio = the per-request service's cost over Fargate's (>1: ours
    is cheaper)."""
    unit = f"{prices.currency} ({prices.region}, prices of {prices.read_on})"
    rows: list[Measurement] = []
    named: set[str] = set()
    for line in priced:
        other = f"{PREFIX}{line.kind}, {_label(line.per_request_name, prices)}"
        if line.per_request is not None and other not in named:
            rows.append(Measurement(other, line.per_request, unit))
            named.add(other)
        spot = f"Fargate Spot at {prices['fargate_spot_discount'] or 0:.0%} off"
        for how, cost in (("Fargate on-demand", line.on_demand), (spot, line.spot)):
            if cost is None:
                continue
            ratio = line.per_request / cost if line.per_request is not None else None
            reference = other if ratio is not None else None
            rows.append(Measurement(f"{PREFIX}{line.work}, {how}", cost, unit, reference, ratio))
    return rows


def _label(per_request: str, prices: Prices) -> str:
    if per_request == "Lambda":
        return f"Lambda (Pillow, {prices['lambda_one_vcpu_mb'] or 0:,.0f} MB)"
    return "MediaConvert Basic"


def print_table(
    priced: Sequence[Line],
    skipped: Sequence[str],
    prices: Prices,
    task: TaskSize,
    *,
    utilisation: float,
    console: Console | None = None,
) -> None:
    console = console or Console(width=110)
    table = Table(title=f"what the work costs, {prices.region}, prices read {prices.read_on}")
    columns = ("work", "CPU s", "Fargate", "Fargate Spot", "Lambda", "MediaConvert", "vs Fargate")
    for column in columns:
        table.add_column(column, justify="left" if column == "work" else "right")
    for line in priced:
        cells = {"Lambda": "-", "MediaConvert": "-", line.per_request_name: _usd(line.per_request)}
        ratio = (
            f"{line.per_request / line.on_demand:.1f}x"
            if line.per_request is not None and line.on_demand
            else ""
        )
        table.add_row(
            line.work,
            f"{line.cpu_seconds:,.0f}",
            _usd(line.on_demand),
            _usd(line.spot),
            cells["Lambda"],
            cells["MediaConvert"],
            ratio,
        )
    console.print(table)
    gb_per_vcpu = task.memory_gb / task.vcpu
    console.print(
        f"Fargate: tasks of {task.vcpu:g} vCPU and {task.memory_gb:g} GB (the template's default)"
        f" at {utilisation:.0%} use, Linux/x86 on-demand; each CPU second bills one vCPU-second"
        f" and {gb_per_vcpu:g} GB-seconds. Spot at AWS's 'up to 70%' off, its best case. Lambda:"
        " Pillow's measured CPU time per photo as wall time at 1,769 MB (one vCPU), x86, plus a"
        " request each. MediaConvert: Basic tier, AVC, HD, <=30 fps, per output minute."
        " 'vs Fargate': the per-request service's cost over Fargate on-demand. Time on S3 is left"
        " out everywhere; 'stage + worker' adds the worker's own CPU per upload."
    )
    for name in prices.missing:
        price = prices.entries[name]
        console.print(f"[yellow]Price not found[/], {price.what}: {price.note}")
    for reason in skipped:
        console.print(f"[yellow]Not priced, {reason}[/] (run the suite: python -m bench)")
    sources = sorted({p.source for p in prices.entries.values()})
    console.print(f"Prices from bench/prices.json: {', '.join(sources)}")


def _usd(value: float | None) -> str:
    if value is None:
        return "no price"
    return f"${value:.4f}" if value < 1 else f"${value:,.2f}"


# --- results.json -----------------------------------------------------------------------------


def read_results(path: Path) -> list[dict[str, Any]]:
    """The results file's rows as they are: other fields (spread, rounds ...) kept untouched."""
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CostError(f"{path}: not a benchmark results file ({error})") from None
    good = isinstance(rows, list) and all(
        isinstance(r, dict)
        and isinstance(r.get("name"), str)
        and isinstance(r.get("value"), int | float)
        for r in rows
    )
    if not good:
        raise CostError(f"{path}: not a benchmark results file (rows need a name and a value)")
    return list(rows)


def figures_of(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Each row's value by name, in seconds where its unit is milliseconds.

    The worker suite tags its rows with the settings they ran with ("... [8 jobs, 2 CPU
    threads]"); the first row of each name is also found under the name without its tag.
    """
    scale = {"ms": 1e-3}
    figures: dict[str, float] = {}
    for row in rows:
        name, value = str(row["name"]), float(row["value"]) * scale.get(row.get("unit"), 1.0)
        figures[name] = value
        if name.endswith("]") and " [" in name:
            figures.setdefault(name[: name.rindex(" [")], value)
    return figures


def write_back(path: Path, rows: Sequence[Mapping[str, Any]], costs: Sequence[Measurement]) -> None:
    kept = [dict(row) for row in rows if not str(row["name"]).startswith(PREFIX)]
    path.write_text(json.dumps(kept + [asdict(m) for m in costs], indent=2) + "\n")


def run(
    rows: Sequence[Mapping[str, Any]],
    *,
    prices: Prices,
    task: TaskSize,
    utilisation: float = 1.0,
    console: Console | None = None,
) -> list[Measurement]:
    """Price the figures in ``rows``, print the table, return the rows to add."""
    priced, skipped = lines(figures_of(rows), prices, task, utilisation=utilisation)
    print_table(priced, skipped, prices, task, utilisation=utilisation, console=console)
    return measurements(priced, prices)


def after_bench(done: Sequence[Measurement], *, out: Path) -> list[Measurement]:
    """`python -m bench`'s last step: this run's figures priced, the rows added to ``out``."""
    rows = [asdict(m) for m in done]
    costs = run(rows, prices=Prices.load(), task=TaskSize.from_template())
    write_back(out, rows, costs)  # `python -m bench` wrote exactly these rows to ``out``
    return costs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__)
    parser.add_argument("--results", type=Path, default=RESULTS, help="(%(default)s)")
    parser.add_argument("--prices", type=Path, default=PRICES, help="(%(default)s)")
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="the task size's source")
    parser.add_argument("--utilisation", type=float, default=1.0, help="of a task's vCPUs")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    try:
        rows = read_results(args.results)
        prices = Prices.load(args.prices)
        task = TaskSize.from_template(args.template)
        costs = run(rows, prices=prices, task=task, utilisation=args.utilisation)
    except CostError as error:
        parser.exit(2, f"python -m bench.cost: {error}\n")
    if not args.no_write:
        write_back(args.results, rows, costs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
