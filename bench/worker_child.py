"""The child processes of the worker bench (bench/worker.py), one job each, JSON on stdout.

    python -m bench.worker_child stage THREADS WARM COUNT FILE...  # the CPU stages alone
    python -m bench.worker_child worker WARM COUNT TOTAL           # the real worker

``stage`` and ``worker`` read the same MEDIAMILL_* environment, so the stages alone run with
the options and libvips thread pool the worker gives them. Both measure a steady state: the
window opens when WARM uploads have ended and closes when WARM + COUNT have, with more still
running (start-up, first connections and the ramp are outside it, and so is the tail).
"""

from __future__ import annotations

import itertools
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.report import cpu_seconds

# The stage that makes each kind's renditions; probe runs before it, as in the worker.
MAKERS = {"image": "thumbnail", "video": "transcode"}
_POLL_SECONDS = 0.01


def _registry() -> Any:
    from mediamill_core.settings import load_settings
    from worker.registry import StageRegistry

    settings = load_settings()
    return settings, StageRegistry.from_settings(settings.stages, settings.stage_options)


class Window:
    """Time and CPU when the ``warm``-th upload ended and when the ``warm + count``-th did."""

    def __init__(self, warm: int, count: int) -> None:
        self.warm, self.count = warm, count
        self.opened: tuple[float, float] | None = None
        self.closed: tuple[float, float] | None = None
        self._lock = threading.Lock()

    def ended(self, done: int) -> None:
        """``done`` uploads have ended so far."""
        with self._lock:
            if self.opened is None and done >= self.warm:
                self.opened = (time.perf_counter(), cpu_seconds())
            if self.closed is None and done >= self.warm + self.count:
                self.closed = (time.perf_counter(), cpu_seconds())

    def figures(self) -> dict[str, float]:
        assert self.opened is not None
        assert self.closed is not None
        return {
            "uploads": self.count,
            "seconds": self.closed[0] - self.opened[0],
            "cpu_seconds": self.closed[1] - self.opened[1],
        }


def stage_main(threads: int, window: Window, files: list[Path]) -> None:
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

    done = itertools.count(1)
    window.ended(0)

    def one(path: Path, scratch: Path) -> None:
        run(path, scratch)
        window.ended(next(done))

    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda path: one(path, Path(tmp)), files))
    print(json.dumps(window.figures()))


def worker_main(window: Window, total: int) -> None:
    """The production Worker on the stack the environment names, until ``total`` jobs end."""
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
        # Calls are counted over every upload: each makes the same calls, whereas a window's
        # edges cut through jobs at different points of theirs.
        before = metrics.aws_calls()
        # A poll costs microseconds a hundred times a second: nothing the figures can see.
        while worker.jobs_done < total:
            window.ended(worker.jobs_done)
            await anyio.sleep(_POLL_SECONDS)
        window.ended(worker.jobs_done)
        calls = Counter(metrics.aws_calls())
        calls.subtract(before)
        figures.update(window.figures())
        figures["calls"] = {name: n / total * window.count for name, n in sorted(calls.items())}
        worker.request_stop()

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(measure)
            await worker.run()

    anyio.run(main)
    ready = metrics.JOBS.labels("ready", "media")._value.get()
    if ready != total:
        raise SystemExit(f"only {ready:g} of {total} uploads ended READY: see the worker's log")
    print(json.dumps(figures))


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode == "stage":
        stage_main(int(rest[0]), Window(int(rest[1]), int(rest[2])), [Path(n) for n in rest[3:]])
    elif mode == "worker":
        worker_main(Window(int(rest[0]), int(rest[1])), int(rest[2]))
    else:
        raise SystemExit(__doc__)
