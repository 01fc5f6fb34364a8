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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.report import cpu_seconds

# The stage that makes each kind's renditions; probe runs before it, as in the worker.
MAKERS = {"image": "thumbnail", "video": "transcode"}
# Between the window's edges the worker's own threads are sampled this often, so a thread that
# ends mid-window loses at most the CPU it used since the last sample.
_SAMPLE_SECONDS = 0.5


def _registry() -> Any:
    from mediamill_core.settings import load_settings
    from worker.registry import StageRegistry

    settings = load_settings()
    return settings, StageRegistry.from_settings(settings.stages, settings.stage_options)


class OwnThreads:
    """CPU the worker's own threads have used: every Python thread but a stage's.

    That is the event loop (botocore, aiohttp, asyncio, logging, metrics) and the worker threads
    of anyio and asyncio (spooling, reading renditions, tagging's re-encode). A CPU-bound stage
    runs in a thread named ``stage NAME MEDIA_ID`` with helpers of its own (a video's ``stills``)
    and the native threads of libvips and FFmpeg, which Python does not list: all of those are
    the stage's. Each thread's CPU clock is read at every :meth:`sample` (some 15 to 50 us); a
    thread that has ended keeps its last reading, so one that ends between two samples loses the
    CPU it used after the first. anyio's worker threads end only after 10 s idle: they lose none.
    """

    def __init__(self) -> None:
        from stages.video.poster import STILLS_THREAD_PREFIX
        from worker.stage_runner import STAGE_THREAD_PREFIX

        self._stage_threads = (STAGE_THREAD_PREFIX, STILLS_THREAD_PREFIX)
        self._last: dict[threading.Thread, float] = {}

    def sample(self) -> float:
        """Seconds of CPU the worker's own threads have used so far."""
        for thread in threading.enumerate():
            if thread.name.startswith(self._stage_threads) or thread.ident is None:
                continue
            try:
                self._last[thread] = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
            except OSError:
                continue  # it ended between the listing and the read: its last reading stands
        return sum(self._last.values())


class Window:
    """Time and CPU when the ``warm``-th upload ended and when the ``warm + count``-th did;
    with ``own``, also the CPU of the worker's own threads then."""

    def __init__(self, warm: int, count: int, own: Callable[[], float] | None = None) -> None:
        self.warm, self.count = warm, count
        self.opened: tuple[float, float, float] | None = None
        self.closed: tuple[float, float, float] | None = None
        self._own = own
        self._lock = threading.Lock()

    def _now(self) -> tuple[float, float, float]:
        return (time.perf_counter(), cpu_seconds(), self._own() if self._own else 0.0)

    def ended(self, done: int) -> None:
        """``done`` uploads have ended so far."""
        with self._lock:
            if self.opened is None and done >= self.warm:
                self.opened = self._now()
            if self.closed is None and done >= self.warm + self.count:
                self.closed = self._now()

    def figures(self) -> dict[str, float]:
        assert self.opened is not None
        assert self.closed is not None
        figures = {
            "uploads": self.count,
            "seconds": self.closed[0] - self.opened[0],
            "cpu_seconds": self.closed[1] - self.opened[1],
        }
        if self._own is not None:
            figures["own_cpu_seconds"] = self.closed[2] - self.opened[2]
        return figures


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


class Watch:
    """The window's edges read as the worker finishes each job (``Worker(on_job_done=...)``),
    exactly then, and the worker's own threads sampled every ``every`` seconds in between."""

    def __init__(
        self, window: Window, own: OwnThreads, total: int, every: float = _SAMPLE_SECONDS
    ) -> None:
        import anyio

        self.window, self._own, self._total, self._every = window, own, total, every
        self._all_done = anyio.Event()

    def job_done(self, done: int) -> None:
        """``done`` jobs have ended: on the event loop, in the step that ended the last one."""
        self.window.ended(done)
        if done >= self._total:
            self._all_done.set()

    async def run(self, done: int) -> None:
        """From ``done`` jobs ended until ``total`` have."""
        import anyio

        self.job_done(done)  # a window opening with no uploads warm opens at once
        while not self._all_done.is_set():
            with anyio.move_on_after(self._every):
                await self._all_done.wait()
            self._own.sample()


def worker_main(warm: int, count: int, total: int) -> None:
    """The production Worker on the stack the environment names, until ``total`` jobs end."""
    import anyio

    from worker import metrics
    from worker.consumer import Worker
    from worker.logs import configure_logging

    settings, registry = _registry()
    configure_logging(settings.log_level, settings.log_format)
    own = OwnThreads()
    window = Window(warm, count, own.sample)
    figures: dict[str, Any] = {}

    async def main() -> None:
        # No poll: one a hundred times a second (a timer wake-up, some 70 us on an idle loop,
        # and 15 to 50 us reading the clocks) would be counted in the worker's own CPU.
        watch = Watch(window, own, total)
        worker = Worker(settings, registry, burst=False, on_job_done=watch.job_done)

        async def measure() -> None:
            await worker.started.wait()
            # Calls are counted over every upload: each makes the same calls, whereas a window's
            # edges cut through jobs at different points of theirs.
            before.update(metrics.aws_calls())
            await watch.run(worker.jobs_done)
            figures.update(window.figures())
            worker.request_stop()

        async with anyio.create_task_group() as group:
            group.start_soon(measure)
            await worker.run()

    before: dict[str, float] = {}
    anyio.run(main)
    # Counted once the worker has stopped: the last jobs' deletes, owed until then, are sent
    # by the stop, and are theirs as much as any other.
    calls = Counter(metrics.aws_calls())
    calls.subtract(before)
    figures["calls"] = {name: n / total * window.count for name, n in sorted(calls.items())}
    ready = metrics.JOBS.labels("ready", "media")._value.get()
    if ready != total:
        raise SystemExit(f"only {ready:g} of {total} uploads ended READY: see the worker's log")
    print(json.dumps(figures))


def keep_to_cores() -> None:
    """Stay on the cores the bench gave (BENCH_WORKER_CORES), before any thread starts."""
    import os

    cores = os.environ.get("BENCH_WORKER_CORES")
    if cores:
        os.sched_setaffinity(0, {int(core) for core in cores.split(",")})


if __name__ == "__main__":
    keep_to_cores()
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode == "stage":
        stage_main(int(rest[0]), Window(int(rest[1]), int(rest[2])), [Path(n) for n in rest[3:]])
    elif mode == "worker":
        worker_main(int(rest[0]), int(rest[1]), int(rest[2]))
    else:
        raise SystemExit(__doc__)
