"""``python -m bench.scaling``: simulate the policies on deploy/ecs/sizing.json, print the table
and the backlog-per-task target to set as the template's BacklogPerTaskTarget."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.report import Measurement
from bench.scaling.choice import SEEDS, Choice, Outcome, Setup, choose, setup
from bench.scaling.inputs import (
    SIZING,
    TEMPLATE,
    InputError,
    Sizing,
    parameter_default,
    read_template,
    results_file,
    scale_in_cooldown,
)
from bench.scaling.model import Result
from bench.scaling.policy import Lags

# Used where the template does not (yet) carry a default of its own.
FALLBACK_GOAL, FALLBACK_MIN, FALLBACK_MAX = 300.0, 1, 10


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__)
    parser.add_argument("--sizing", type=Path, default=SIZING, help="inputs (%(default)s)")
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="defaults from here")
    parser.add_argument("--from-results", type=Path, metavar="RESULTS_JSON", help=_FROM_RESULTS)
    parser.add_argument("--goal", type=float, help="latency goal L, seconds (LatencyGoalSeconds)")
    parser.add_argument("--min-tasks", type=int, help="MinTasks")
    parser.add_argument("--max-tasks", type=int, help="MaxTasks")
    parser.add_argument("--task-start", type=float, default=Lags().task_start, help="seconds")
    parser.add_argument("--metric-lag", type=float, default=Lags().metric_lag, help="seconds")
    parser.add_argument("--scale-in-cooldown", type=float, help="seconds (the template's)")
    parser.add_argument("--seed", type=int, default=SEEDS[0], help="the first seed (%(default)s)")
    parser.add_argument("--seeds", type=int, help=f"seeds to run (default {len(SEEDS)})")
    parser.add_argument(
        "--quick", action="store_true", help="a shorter run, one seed: a smoke test"
    )
    args = parser.parse_args(argv)
    console = Console(width=_WIDTH)
    try:
        sizing = Sizing.load(args.sizing)
        if args.from_results:
            sizing = refresh(sizing, results_file(args.from_results), args.sizing, console)
        template = read_template(args.template)
        s = configure(
            sizing,
            template,
            goal=args.goal,
            min_tasks=args.min_tasks,
            max_tasks=args.max_tasks,
            lags=Lags(task_start=args.task_start, metric_lag=args.metric_lag),
            scale_in=args.scale_in_cooldown,
            quick=args.quick,
            seeds=_seeds(args.seed, args.seeds, quick=args.quick),
        )
    except InputError as error:
        parser.exit(2, f"python -m bench.scaling: {error}\n")
    choice = choose(s)
    in_template = parameter_default(template, "BacklogPerTaskTarget")
    extra = None
    if in_template is not None and round(in_template) not in {o.target for o in choice.tried}:
        extra = s.tracking(f"tracking B = {in_template:g}, the template's", round(in_template))
    report(s, choice, in_template, console, also=extra)
    return 0 if choice.pick is not None else 1


_WIDTH = 104  # the table in one piece, in a terminal or a file
_FROM_RESULTS = "rewrite the sizing file's measured figures from a `make bench` results file first"


def configure(
    sizing: Sizing,
    template: dict[str, object],
    *,
    goal: float | None = None,
    min_tasks: int | None = None,
    max_tasks: int | None = None,
    lags: Lags | None = None,
    scale_in: float | None = None,
    quick: bool = False,
    seeds: tuple[int, ...] = SEEDS,
) -> Setup:
    """The scenario for these inputs, with the template's defaults wherever none is given."""

    def default(name: str, fallback: float) -> float:
        value = parameter_default(template, name)
        return fallback if value is None else value

    lags = lags or Lags()
    cooldown = scale_in if scale_in is not None else scale_in_cooldown(template)
    if cooldown is not None:
        lags = replace(lags, scale_in_cooldown=cooldown)
    return setup(
        sizing.work,
        sizing.shape,
        lags,
        steady_rate=sizing.steady_uploads_per_second,
        goal=goal if goal is not None else default("LatencyGoalSeconds", FALLBACK_GOAL),
        min_tasks=min_tasks if min_tasks is not None else int(default("MinTasks", FALLBACK_MIN)),
        max_tasks=max_tasks if max_tasks is not None else int(default("MaxTasks", FALLBACK_MAX)),
        quick=quick,
        seeds=seeds,
    )


def _seeds(first: int, count: int | None, *, quick: bool) -> tuple[int, ...]:
    return tuple(range(first, first + (count or (1 if quick else len(SEEDS)))))


def refresh(
    sizing: Sizing, measurements: Sequence[Measurement], path: Path, console: Console
) -> Sizing:
    """Write the fresh CPU figures into the sizing file, and say so."""
    fresh = sizing.measured_again(measurements, command="make bench")
    fresh.save(path)
    console.print(
        f"{path}: rewritten from this run's figures: a photo {fresh.photo_cpu_seconds:g} CPU s,"
        f" a {fresh.video_seconds} s video {fresh.video_cpu_seconds:g} CPU s"
        f" ({fresh.video_cores_busy:g} cores busy). Commit it, and set the template's"
        " BacklogPerTaskTarget to the pick below."
    )
    return fresh


def after_bench(measurements: Sequence[Measurement], *, quick: bool) -> None:
    """`make bench`'s last step: the fresh CPU figures into sizing.json, then the simulation."""
    console = Console(width=_WIDTH)
    if quick:
        console.print(f"{SIZING}: kept; a --quick run's clips are shorter than the ones it holds.")
    else:
        refresh(Sizing.load(), measurements, SIZING, console)
    main(["--quick"] if quick else [])


def report(
    s: Setup,
    choice: Choice,
    in_template: float | None,
    console: Console,
    *,
    also: Outcome | None = None,
) -> None:
    seeds = len(s.seeds)
    table = Table(title=f"scaling simulation: goal p95 <= L = {s.goal:g} s, {seeds} seed(s)")
    columns = ("load", "policy", "p50 s", "p95 s", "p99 s", "> L", "peak", "task-h", "met")
    for column in columns:
        table.add_column(column, justify="left" if column in ("load", "policy") else "right")
    rows = [choice.fixed, choice.naive, *([choice.formula] if choice.formula else [])]
    if choice.pick is not None:
        pick = choice.pick
        rows = [replace(o, label=f"{o.label}, the pick") if o is pick else o for o in rows]
        if pick not in (choice.naive, choice.formula):
            rows.append(replace(pick, label=f"{pick.label}, the pick"))
    rows += [also] if also is not None else []
    for load, which in ((s.steady.name, "steady"), (s.burst.name, "burst")):
        for outcome in rows:
            runs: tuple[Result, ...] = getattr(outcome, which)
            met = sum(r.percentile(0.95) <= s.goal for r in runs)
            cells = _cells(outcome.pooled(which), s.goal)
            table.add_row(load, outcome.label, *cells, f"{met}/{seeds}")
        table.add_section()
    console.print(table)
    work, lags = s.work, s.lags
    console.print(
        f"mu = {s.mu:.3f} messages/s a task ({s.shape.vcpu:g} vCPU, {s.shape.slots} slots; "
        f"a message costs {work.mean_cpu:.2f} CPU s on average: {1 - work.video_share:.0%} photos"
        f" at {work.photo_cpu:g}, {work.video_share:.0%} videos at {work.video_cpu:g}). "
        f"T_react = {lags.reaction:g} s. Tasks {s.min_tasks}..{s.max_tasks}; "
        f"{s.steady.rate:g} uploads/s steady. Percentiles pool the seeds; task-hours are a run's "
        f"mean over a judged window of {s.scenario.window / 60:g} min; met: seeds within L."
    )
    if choice.formula is None:
        console.print(
            "B = mu*(L - T_react) has no value: the goal is shorter than the reaction time, so"
            " only the running tasks' spare capacity can absorb the start of a burst."
        )
    busiest = math.ceil(s.burst.rate * s.burst.burst_factor / s.mu)
    if busiest > s.max_tasks:
        console.print(
            f"[bold red]MaxTasks {s.max_tasks} is below the {busiest} tasks the burst keeps busy"
            " at full CPU:[/] the backlog grows until the burst ends, whatever the target."
        )
    if choice.pick is None:
        console.print(
            f"[bold red]No target keeps p95 within {s.goal:g} s for both loads:[/] raise "
            "MaxTasks or MinTasks, give the tasks more vCPUs, or allow a longer goal."
        )
        return
    verdict = "absent from the template"
    if in_template is not None:
        agrees = math.isclose(in_template, choice.target or 0)
        verdict = "the template agrees" if agrees else f"the template says {in_template:g}: fix it"
    console.print(f"[bold]BacklogPerTaskTarget = {choice.target}[/] ({verdict}).")


def _cells(result: Result | None, goal: float) -> list[str]:
    if result is None:
        return ["-"] * 6  # not run: the search had its answer from the steady load already

    def seconds(value: float) -> str:
        return "never" if math.isinf(value) else f"{value:.0f}"

    return [
        *(seconds(result.percentile(q)) for q in (0.5, 0.95, 0.99)),
        f"{result.over(goal):.1%}",
        str(result.peak_tasks),
        f"{result.task_hours:.1f}",
    ]
