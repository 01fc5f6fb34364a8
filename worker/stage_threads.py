"""CPU-bound stages in threads that are told to stop, waited for, and never silently abandoned.

A thread cannot be killed. When its stage is cancelled or times out, the thread is signalled
(``job.cancelled``) and awaited for a grace; its CPU slot stays taken until the thread has
returned, so neither a retry nor another job runs beside it on that core. A thread still running
after the grace is *stuck*: it is counted and listed for /healthz, which then fails so that ECS
replaces the task. The threads are daemons: a stuck one never keeps the process from exiting.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from dataclasses import dataclass

import anyio
import anyio.from_thread
import anyio.lowlevel

from stages.contract import Job, Stage, StageResult
from worker import metrics


@dataclass(frozen=True, slots=True)
class StuckThread:
    """A stage thread that did not return within the grace after it was told to stop."""

    stage: str
    media_id: str
    since: float  # time.monotonic() when it was told to stop

    def describe(self, now: float) -> str:
        return (
            f"stage {self.stage!r} of {self.media_id} ignored cancellation: its thread still "
            f"runs {now - self.since:.0f} s after it was told to stop"
        )


class StageThread:
    """One run of a stage's ``run_sync`` in its own thread, holding a CPU slot until it returns."""

    def __init__(self, owner: StageThreads, stage: Stage, job: Job) -> None:
        self._owner = owner
        self.stage = stage
        self.job = job
        self._finished = anyio.Event()
        self._result: StageResult | None = None
        self._error: BaseException | None = None
        self._stop_requested: float | None = None

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def _start(self) -> None:
        token = anyio.lowlevel.current_token()
        context = contextvars.copy_context()  # structlog's bound media id, as to_thread would

        def target() -> None:
            try:
                self._result = context.run(self.stage.run_sync, self.job)
            except BaseException as exc:  # handed to the awaiting task, which re-raises it
                self._error = exc
            finally:
                # RuntimeError: the event loop is gone (the process exits), nothing to release.
                with contextlib.suppress(RuntimeError):
                    anyio.from_thread.run_sync(self._returned, token=token)

        name = f"stage {self.stage.name} {self.job.media_id}"
        threading.Thread(target=target, name=name, daemon=True).start()

    def _returned(self) -> None:
        try:
            self._owner._release(self)
        finally:
            self._finished.set()

    async def result(self) -> StageResult:
        """Wait for the thread; its exception, if it raised one, is raised here."""
        await self._finished.wait()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    async def stop(self) -> bool:
        """Signal the thread and wait for it up to the grace; False when it is stuck.

        Call it shielded from cancellation: the grace must run even when the job is cancelled.
        """
        if self._stop_requested is None:
            self._stop_requested = time.monotonic()
        self.job.cancelled.set()
        with anyio.move_on_after(self._owner.grace_seconds):
            await self._finished.wait()
        if not self.finished:
            self._owner._mark_stuck(self, self._stop_requested)
        return self.finished


class StageThreads:
    """Runs CPU-bound stages under one limiter sized to the cores; keeps the stuck ones."""

    def __init__(self, limiter: anyio.CapacityLimiter, *, grace_seconds: float) -> None:
        self.limiter = limiter
        self.grace_seconds = grace_seconds
        self._stuck: dict[StageThread, StuckThread] = {}

    async def start(self, stage: Stage, job: Job) -> StageThread:
        """Take a CPU slot (waiting for one) and start the stage's thread in it."""
        thread = StageThread(self, stage, job)
        await self.limiter.acquire_on_behalf_of(thread)
        try:
            thread._start()
        except BaseException:
            self.limiter.release_on_behalf_of(thread)
            raise
        return thread

    @property
    def stuck(self) -> list[StuckThread]:
        return list(self._stuck.values())

    def health_problems(self) -> list[str]:
        now = time.monotonic()
        return [stuck.describe(now) for stuck in self._stuck.values()]

    def _mark_stuck(self, thread: StageThread, since: float) -> None:
        if thread not in self._stuck:
            self._stuck[thread] = StuckThread(thread.stage.name, thread.job.media_id, since)
            metrics.STUCK_THREADS.labels(thread.stage.name).inc()
            metrics.STUCK_THREADS_NOW.inc()
            thread.job.log.error(
                "stage_thread_stuck",
                grace_seconds=self.grace_seconds,
                detail="the thread ignored cancellation; it keeps its CPU slot until it returns",
            )

    def _release(self, thread: StageThread) -> None:
        self.limiter.release_on_behalf_of(thread)
        if self._stuck.pop(thread, None) is not None:
            metrics.STUCK_THREADS_NOW.dec()
            thread.job.log.warning("stage_thread_returned_late")
