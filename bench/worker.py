"""The worker's own cost per upload: the real worker end to end against its stages alone.

Photos (12 MP camera JPEGs of real photographs, as bench/images makes them) and short 1080p
clips are uploaded through the API to moto, which runs in a child process of its own so the
emulation's CPU is never the worker's. Then, in interleaved rounds (stage, worker, stage,
worker ...), one child runs the CPU stages alone (probe, then thumbnail or transcode) on the
same files with the worker's CPU threads, and another runs the production ``Worker`` until
every upload of the round is READY. Each reports the CPU it used and the time from its start
of work to the last upload's end; the worker also counts its AWS calls by operation.

- stage CPU per upload: the stages alone, over the uploads of a round;
- the worker's own CPU per upload: the CPU of the worker's own threads in its window, the event
  loop's and anyio's (claims, spooling, S3, DynamoDB, SNS, Rekognition, SQS, logging), against
  the rest of its CPU, its stages', in the same process and seconds; and, across processes, the
  worker's CPU less the stages' alone;
- end to end: uploads per second through the worker against the stages alone.

Each suite runs twice: first with moto on a core of its own and the work on the others (AWS is
elsewhere in production: this is the figure per core), then with every core shared with moto.

    python -m bench worker                      # part of `make bench`
    python -m bench.worker [--quick] [--concurrency 8] [--cpu-threads 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.report import Measurement, cpu_count, print_table, python_child, run_child

# What the product ships: a plugin installed beside it (this venv's checksum) is not the worker.
BUILT_IN_STAGES = "probe,thumbnail,transcode,tagging,publish"
# moto has no DetectModerationLabels: the tagging stage asks for labels only, as in `mediamill dev`.
_STAGE_OPTIONS = {"tagging": {"moderation": False}}
_PY_SPY = [
    str(Path(sys.executable).with_name("py-spy")),
    "record",
    "--format",
    "raw",
    "--rate",
    "200",
]


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of upload: its label, and the files a round measures."""

    label: str
    unit: str
    files: tuple[Path, ...]
    # Uploads before the window and after it: as many as run at once, so that both edges are
    # in a steady state. A photo job waits for a CPU thread after its claim and spool, so every
    # job slot holds one; a clip's CPU thread is busy for seconds, so the threads bound it.
    warm_per: str  # "job slot" or "CPU thread"

    def round_files(self, concurrency: int, cpu_threads: int) -> tuple[int, list[Path]]:
        """How many uploads come before the window, and every upload of a round."""
        warm = concurrency if self.warm_per == "job slot" else cpu_threads
        cycle = itertools.cycle(self.files)
        return warm, [next(cycle) for _ in range(warm)] + list(self.files) + [
            next(cycle) for _ in range(warm)
        ]


@dataclass(slots=True)
class Rounds:
    """Each round's figures for one kind, stage alone and through the worker."""

    stage: list[dict[str, Any]] = field(default_factory=list)
    worker: list[dict[str, Any]] = field(default_factory=list)
    baseline: list[dict[str, Any]] = field(default_factory=list)


def _on_path(env: dict[str, str], tree: Path | None) -> dict[str, str]:
    """``env`` with ``tree`` first on the import path (None: this checkout, as it is)."""
    if tree is None:
        return env
    rest = env.get("PYTHONPATH")
    return {**env, "PYTHONPATH": os.pathsep.join([str(tree), *([rest] if rest else [])])}


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def calls_per_upload(rounds: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Median calls per upload of each operation (a missing one counts 0 in that round)."""
    names = sorted({name for r in rounds for name in r["calls"]})
    return {
        name: median([r["calls"].get(name, 0) / r["uploads"] for r in rounds]) for name in names
    }


def _spread(name: str, values: Sequence[float], unit: str, **more: Any) -> Measurement:
    """A row from per-round values: their median, with their range and count."""
    return Measurement(
        name, median(values), unit, low=min(values), high=max(values), rounds=len(values), **more
    )


def summarise(
    kind: Kind, rounds: Rounds, *, load: float, baseline: bool = False
) -> list[Measurement]:
    """The suite's rows for one kind from its rounds (of the baseline's worker, if asked)."""
    workers = rounds.baseline if baseline else rounds.worker
    stage_cpu = [r["cpu_seconds"] / r["uploads"] * 1000 for r in rounds.stage]
    worker_cpu = [r["cpu_seconds"] / r["uploads"] * 1000 for r in workers]
    # In the worker's process and window: its own threads' CPU, and the rest (its stages').
    own = [r["own_cpu_seconds"] / r["uploads"] * 1000 for r in workers]
    inside = [w - o for w, o in zip(worker_cpu, own, strict=True)]
    # Round by round: each worker round against the stage round just before it.
    paired = list(zip(rounds.stage, workers, strict=False))
    stage_rates = [r["uploads"] / r["seconds"] for r in rounds.stage]
    worker_rates = [r["uploads"] / r["seconds"] for r in workers]
    end_to_end = [(w["uploads"] / w["seconds"]) / (s["uploads"] / s["seconds"]) for s, w in paired]
    by_difference = [
        w["cpu_seconds"] / w["uploads"] * 1000 - s["cpu_seconds"] / s["uploads"] * 1000
        for s, w in paired
    ]
    difference_share = [
        100 * d / (s["cpu_seconds"] / s["uploads"] * 1000)
        for d, (s, _) in zip(by_difference, paired, strict=True)
    ]
    calls = calls_per_upload(workers)
    moto = [r["moto_cpu_seconds"] / r["total_uploads"] * 1000 for r in workers]
    name = f"{'baseline' if baseline else 'worker'} {kind.label}"
    alone = f"{name} stage CPU/upload"
    stage_alone = f"{name} stage alone"
    return [
        _spread(alone, stage_cpu, "ms"),
        _spread(
            f"{name} stage CPU in the worker/upload",
            inside,
            "ms",
            reference=alone,
            ratio=median(stage_cpu) / median(inside),
        ),
        _spread(f"{name} own CPU/upload", own, "ms"),
        _spread(
            f"{name} own CPU vs stage's",
            [100 * o / i for o, i in zip(own, inside, strict=True)],
            "%",
        ),
        # The same by difference, across processes: the worker's CPU less the stages' alone.
        # It also charges the worker with any stage work that costs more beside the event loop.
        _spread(f"{name} worker CPU less the stage alone's/upload", by_difference, "ms"),
        _spread(f"{name} worker CPU less the stage alone's vs stage's", difference_share, "%"),
        _spread(stage_alone, stage_rates, kind.unit),
        Measurement(
            f"{name} end to end",
            median(worker_rates),
            kind.unit,
            stage_alone,
            median(end_to_end),
            low=min(worker_rates),
            high=max(worker_rates),
            rounds=len(worker_rates),
            ratio_low=min(end_to_end),
            ratio_high=max(end_to_end),
        ),
        Measurement(f"{name} AWS calls/upload", sum(calls.values()), "calls"),
        _spread(f"{name} moto CPU/upload (not the worker's)", moto, "ms"),
        *(Measurement(f"{name} {op}/upload", n, "calls") for op, n in calls.items() if n),
        Measurement(f"{name} load average", load, "1 min"),
    ]


# --- the emulation and the stack ---------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU a live process has used (Linux /proc), for the emulation's share."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin_process(pid: int, cores: set[int]) -> None:
    """Keep every thread of ``pid`` on ``cores``: the threads it starts later inherit it."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cores)


def placements(cores: Sequence[int]) -> list[tuple[str, set[int] | None]]:
    """Where a suite runs: moto on a core of its own beside the work's (when there are two or
    more, as AWS is elsewhere in production), then every core shared with moto."""
    found: list[tuple[str, set[int] | None]] = []
    if len(cores) >= 2:
        found.append(("moto on its own core", set(cores[:-1])))
    found.append(("moto beside it", None))
    return found


def worker_env(
    stack_env: dict[str, str], spool: Path, concurrency: int, cpu_threads: int
) -> dict[str, str]:
    from worker.dev.devstack import DEV_CREDENTIALS

    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "MEDIAMILL_"))
    }
    env.update(DEV_CREDENTIALS)
    env.update(stack_env)
    env.update(
        {
            "AWS_DEFAULT_REGION": stack_env["MEDIAMILL_REGION"],
            "MEDIAMILL_STAGES": BUILT_IN_STAGES,
            "MEDIAMILL_STAGE_OPTIONS": json.dumps(_STAGE_OPTIONS),
            "MEDIAMILL_CONCURRENCY": str(concurrency),
            "MEDIAMILL_CPU_THREADS": str(cpu_threads),
            "MEDIAMILL_METRICS_PORT": "0",
            "MEDIAMILL_METRICS_HOST": "127.0.0.1",
            "MEDIAMILL_SPOOL_DIR": str(spool),
            "MEDIAMILL_LOG_FORMAT": "json",
        }
    )
    return env


async def _upload(env: dict[str, str], files: Sequence[Path]) -> None:
    """Each file through the API as a client would (presigned POST); S3 announces it to SQS."""
    import aiohttp

    from api_lambda.app import MediaApi
    from mediamill_core.settings import load_settings
    from worker.dev.demo import DemoClient
    from worker.dev.local_api import dev_token, serve_api

    values = {
        k.removeprefix("MEDIAMILL_").lower(): v
        for k, v in env.items()
        if k.startswith("MEDIAMILL_")
    }
    runner, url = await serve_api(MediaApi.from_settings(load_settings(**values)))
    try:
        async with aiohttp.ClientSession() as http:
            client = DemoClient(http, url, dev_token("bench"))
            for path in files:
                await client.upload(path, lambda _: None)
    finally:
        await runner.cleanup()


def upload_round(env: dict[str, str], files: Sequence[Path]) -> None:
    import anyio
    import boto3

    anyio.run(_upload, env, files)
    sqs = boto3.client(
        "sqs", endpoint_url=env["MEDIAMILL_ENDPOINT_URL"], region_name=env["MEDIAMILL_REGION"]
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        shown = sqs.get_queue_attributes(
            QueueUrl=env["MEDIAMILL_QUEUE_URL"], AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        if int(shown["ApproximateNumberOfMessages"]) >= len(files):
            return
        time.sleep(0.1)
    raise RuntimeError(f"S3 did not announce the {len(files)} uploads to the queue within 30 s")


def _child_figures(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    result = run_child(argv, env=env)
    # The child's last JSON line (py-spy, when profiling, has its say after it).
    last = [line for line in result.stdout.splitlines() if line.startswith("{")][-1]
    figures: dict[str, Any] = json.loads(last)
    return figures


def measure(
    kinds: Sequence[Kind],
    *,
    rounds: int,
    concurrency: int,
    cpu_threads: int,
    profile: Path | None = None,
    baseline: Path | None = None,
    work_cores: set[int] | None = None,
) -> tuple[dict[str, Rounds], float]:
    """Interleaved rounds for every kind on one emulated stack; the median 1-minute load.

    ``work_cores``: the stage and worker children run on these cores and moto on the others.
    """
    from worker.dev.devstack import StackNames, provision, use_dev_credentials
    from worker.dev.emulator import MotoProcess

    use_dev_credentials()
    found = {kind.label: Rounds() for kind in kinds}
    # This checkout's worker, and a baseline's (another checkout) in the same rounds.
    trees: list[tuple[Path | None, str]] = [(None, "worker")]
    if baseline is not None:
        trees.append((baseline, "baseline"))
    loads: list[float] = []
    aws = MotoProcess()
    with aws as endpoint, tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        assert aws.pid is not None
        stack = provision(endpoint, StackNames.random("bench"), visibility_timeout=120)
        env = worker_env(stack.settings_env(), Path(tmp), concurrency, cpu_threads)
        if work_cores is not None:
            pin_process(aws.pid, set(os.sched_getaffinity(0)) - work_cores)
            env[PIN_ENV] = ",".join(map(str, sorted(work_cores)))
        for number in range(rounds):
            for kind in kinds:
                loads.append(os.getloadavg()[0])
                warm, files = kind.round_files(concurrency, cpu_threads)
                window = (str(warm), str(len(kind.files)))
                stage_argv = python_child(
                    "bench.worker_child", "stage", str(cpu_threads), *window, *map(str, files)
                )
                found[kind.label].stage.append(_child_figures(stage_argv, env))
                for tree, into in trees:
                    upload_round(stack.settings_env(), files)
                    worker_argv = python_child(
                        "bench.worker_child", "worker", *window, str(len(files))
                    )
                    if tree is not None:
                        # -P: not the working directory first on the path, the tree's worker.
                        worker_argv.insert(1, "-P")
                    if profile is not None:
                        # py-spy samples the worker (every thread) from outside: a profile, not
                        # a figure, since sampling takes CPU of its own.
                        out = profile / f"{kind.label.replace(' ', '-')}-{into}-{number}.txt"
                        worker_argv = [*_PY_SPY, "-o", str(out), "--", *worker_argv]
                    moto_before = process_cpu_seconds(aws.pid)
                    figures = _child_figures(worker_argv, _on_path(env, tree))
                    # Over the worker's whole run: the emulation is no cost of the worker's,
                    # but on a small machine it takes cores the worker would use.
                    figures["moto_cpu_seconds"] = process_cpu_seconds(aws.pid) - moto_before
                    figures["total_uploads"] = len(files)
                    getattr(found[kind.label], into).append(figures)
    return found, median(loads)


KINDS = ("photo", "video")
# The cores a child keeps to (bench.worker_child reads it before it starts a thread).
PIN_ENV = "BENCH_WORKER_CORES"


def inputs(root: Path, *, quick: bool, kinds: Sequence[str] = KINDS) -> list[Kind]:
    """Two rounds' worth of jobs for every slot would hide start and end; a round is 12 photos
    (the six bench photographs twice) or three 5-second clips, half that when quick."""
    from bench.images import MEGAPIXELS, PHOTOS, make_photos

    made = []
    if "photo" in kinds:
        photo_dir = Path(tempfile.gettempdir()) / "mediamill-bench-images" / "12mp"
        photo_dir.mkdir(parents=True, exist_ok=True)
        photos = make_photos(photo_dir, megapixels=MEGAPIXELS, names=PHOTOS)
        made.append(
            Kind("photo 12 MP", "photos/s", tuple(photos) * (1 if quick else 2), "job slot")
        )
    if "video" in kinds:
        clip = root / "clip.mp4"
        run_child(python_child("bench.video", "clip", "h264", "2" if quick else "5", str(clip)))
        made.append(Kind("video 1080p", "clips/s", (clip,) * (2 if quick else 3), "CPU thread"))
    return made


def run(
    *,
    quick: bool,
    concurrency: int | None = None,
    cpu_threads: int | None = None,
    rounds: int | None = None,
    profile: Path | None = None,
    kinds: Sequence[str] = KINDS,
    baseline: Path | None = None,
) -> list[Measurement]:
    from mediamill_core.settings import Settings

    defaults = Settings.model_fields
    slots = concurrency or int(defaults["concurrency"].default)
    rows: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="bench-worker-inputs-") as tmp:
        made = inputs(Path(tmp), quick=quick, kinds=kinds)
        for where, work_cores in placements(sorted(os.sched_getaffinity(0))):
            # One CPU thread per core the work has, as the worker's default is.
            threads = cpu_threads or (len(work_cores) if work_cores else cpu_count())
            found, load = measure(
                made,
                rounds=rounds or (1 if quick else 5),
                concurrency=slots,
                cpu_threads=threads,
                profile=profile,
                baseline=baseline,
                work_cores=work_cores,
            )
            # Named by the settings too: a sweep's rows for several settings stay apart.
            tag = f" [{slots} jobs, {threads} CPU threads, {where}]"
            for kind in made:
                found_rows = summarise(kind, found[kind.label], load=load)
                if baseline is not None:
                    found_rows += summarise(kind, found[kind.label], load=load, baseline=True)
                rows.extend(
                    replace(m, name=m.name + tag, reference=m.reference and m.reference + tag)
                    for m in found_rows
                )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--cpu-threads", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument(
        "--baseline", type=Path, help="another checkout whose worker runs in the same rounds"
    )
    parser.add_argument("--kinds", default=",".join(KINDS), help="photo, video or both")
    parser.add_argument("--profile", type=Path, help="a folder for py-spy profiles of the worker")
    args = parser.parse_args(argv)
    rows = run(
        quick=args.quick,
        concurrency=args.concurrency,
        cpu_threads=args.cpu_threads,
        rounds=args.rounds,
        profile=args.profile,
        kinds=args.kinds.split(","),
        baseline=args.baseline,
    )
    print_table(rows, title="the worker's own cost per upload")


if __name__ == "__main__":
    main(sys.argv[1:])
