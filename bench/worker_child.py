"""The child processes of the worker bench (bench/worker.py), one job each, JSON on stdout.

    python -m bench.worker_child moto              # the emulation, until stdin closes
    python -m bench.worker_child stage N FILE...   # the CPU stages alone, N threads
    python -m bench.worker_child worker COUNT      # the real worker until COUNT uploads end

``stage`` and ``worker`` read the same MEDIAMILL_* environment, so the stages alone run with
the options and libvips thread pool the worker gives them. Each figure counts from the moment
the work starts (imports and start-up are left out) to the moment the last upload ends.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.report import cpu_seconds

# The stage that makes each kind's renditions; probe runs before it, as in the worker.
MAKERS = {"image": "thumbnail", "video": "transcode"}
_POLL_SECONDS = 0.01


def moto_main() -> None:
    """moto's server in this process, its endpoint on stdout; it stops when stdin closes."""
    from worker.dev.devstack import EmbeddedAws

    server = EmbeddedAws()
    print(json.dumps({"endpoint_url": server.start()}), flush=True)
    sys.stdin.read()
    server.stop()


def _registry() -> Any:
    from mediamill_core.settings import load_settings
    from worker.registry import StageRegistry

    settings = load_settings()
    return settings, StageRegistry.from_settings(settings.stages, settings.stage_options)


def stage_main(threads: int, files: list[Path]) -> None:
    """Probe, then thumbnail or transcode, each file as the worker's stages would; no AWS."""
    import structlog

    from stages import Job, MediaKind
    from stages.photo.stage import share_cores

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    settings, registry = _registry()
    share_cores(settings.cpu_threads)  # what ThumbnailStage.start does in the worker
    stages = {stage.name: stage for stage in registry.order}
    probe = stages["probe"]

    def run(path: Path, scratch: Path) -> None:
        workdir = Path(tempfile.mkdtemp(dir=scratch))
        (workdir / "probe").mkdir()
        probed = probe.run_sync(Job.standalone(path, workdir / "probe", options=probe.options))
        assert probed.kind is not None
        maker = stages[MAKERS[probed.kind.value]]
        (workdir / maker.name).mkdir()
        kind = MediaKind(probed.kind.value)
        job = Job.standalone(
            path, workdir / maker.name, kind=kind, metadata=probed.metadata, options=maker.options
        )
        maker.run_sync(job)

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        started, cpu_before = time.perf_counter(), cpu_seconds()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda path: run(path, scratch), files))
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_before
    print(json.dumps({"uploads": len(files), "seconds": seconds, "cpu_seconds": cpu}))


def worker_main(count: int) -> None:
    """The production Worker on the stack the environment names, until ``count`` jobs end."""
    import anyio

    from worker import metrics
    from worker.consumer import Worker
    from worker.logs import configure_logging

    settings, registry = _registry()
    configure_logging(settings.log_level, settings.log_format)
    worker = Worker(settings, registry, burst=False)
    figures: dict[str, Any] = {}

    async def measure() -> None:
        await worker.started.wait()
        calls_before = metrics.aws_calls()
        started, cpu_before = time.perf_counter(), cpu_seconds()
        # A poll costs microseconds a hundred times a second: nothing the figures can see.
        while worker.jobs_done < count:  # noqa: ASYNC110
            await anyio.sleep(_POLL_SECONDS)
        figures["seconds"] = time.perf_counter() - started
        figures["cpu_seconds"] = cpu_seconds() - cpu_before
        calls = Counter(metrics.aws_calls())
        calls.subtract(calls_before)
        figures["calls"] = {name: n for name, n in sorted(calls.items()) if n}
        worker.request_stop()

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(measure)
            await worker.run()

    anyio.run(main)
    ready = metrics.JOBS.labels("ready", "media")._value.get()
    if ready != count:
        raise SystemExit(f"only {ready:g} of {count} uploads ended READY: see the worker's log")
    print(json.dumps({"uploads": count, **figures}))


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode == "moto":
        moto_main()
    elif mode == "stage":
        stage_main(int(rest[0]), [Path(name) for name in rest[1:]])
    elif mode == "worker":
        worker_main(int(rest[0]))
    else:
        raise SystemExit(__doc__)
