"""One try of one stage: under its timeout, CPU-bound ones in a thread told to stop and waited for.

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

from stages.contract import BadMediaError, Job, JobCancelled, Stage, StageResult, TransientError
from worker import metrics

# A CPU-bound stage's thread is named "stage NAME MEDIA_ID": the bench tells them from the worker's.
STAGE_THREAD_PREFIX = "stage "


class StageTimeout(TransientError):
    """A stage ran past its timeout or was cancelled; ``stopped`` is False when its thread had
    not returned by the end of the grace (it is stuck, and must not be started again here)."""

    def __init__(self, message: str, *, stopped: bool = True) -> None:
        super().__init__(message)
        self.stopped = stopped


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


class StageRunner:
    """Runs stages for every job of a worker: one CPU limiter sized to the cores, one grace."""

    def __init__(self, limiter: anyio.CapacityLimiter, *, grace_seconds: float) -> None:
        self.limiter = limiter
        self.grace_seconds = grace_seconds
        self._stuck: dict[_StageThread, StuckThread] = {}

    @property
    def stuck(self) -> list[StuckThread]:
        return list(self._stuck.values())

    def health_problems(self) -> list[str]:
        now = time.monotonic()
        return [stuck.describe(now) for stuck in self._stuck.values()]

    async def call(self, stage: Stage, job: Job) -> StageResult:
        """Run the stage once. Past its timeout it raises StageTimeout; however it ended (its
        timeout, a sibling's failure, shutdown), its thread has returned or is counted stuck."""
        thread: _StageThread | None = None
        try:
            with anyio.move_on_after(stage.timeout) as timer:
                if not stage.cpu_bound:
                    return await _run_signalled(stage, job)
                starting = _StageThread(self, stage, job)
                await self.limiter.acquire_on_behalf_of(starting)  # the wait counts as its time
                starting.start()
                thread = starting
                return await thread.result()
        except Exception as raised:
            if not isinstance(first_cause(raised), JobCancelled):
                raise
            if not timer.cancel_called:
                raise StageTimeout(f"stage {stage.name!r} was cancelled") from None
        finally:
            # The job, and the removal of its directory by the caller, wait for the thread.
            job.cancelled.set()
            if thread is not None and not thread.finished:
                with anyio.CancelScope(shield=True):
                    await thread.stop()
        stopped = thread is None or thread.finished
        raise StageTimeout(
            f"stage {stage.name!r} timed out after {stage.timeout:g} s"
            + ("" if stopped else " and did not stop"),
            stopped=stopped,
        )

    def _mark_stuck(self, thread: _StageThread, since: float) -> None:
        if thread not in self._stuck:
            self._stuck[thread] = StuckThread(thread.stage.name, thread.job.media_id, since)
            metrics.STUCK_THREADS.labels(thread.stage.name).inc()
            metrics.STUCK_THREADS_NOW.inc()
            thread.job.log.error(
                "stage_thread_stuck",
                grace_seconds=self.grace_seconds,
                detail="the thread ignored cancellation; it keeps its CPU slot until it returns",
            )

    def _release(self, thread: _StageThread) -> None:
        self.limiter.release_on_behalf_of(thread)
        if self._stuck.pop(thread, None) is not None:
            metrics.STUCK_THREADS_NOW.dec()
            thread.job.log.warning("stage_thread_returned_late")


class _StageThread:
    """A stage's ``run_sync`` in a daemon thread of its own, holding a CPU slot until it returns.

    anyio's worker threads are not used: on cancellation they are abandoned with their slot
    freed, and being non-daemon they keep the process alive until they end.
    """

    def __init__(self, runner: StageRunner, stage: Stage, job: Job) -> None:
        self._runner = runner
        self.stage = stage
        self.job = job
        self._finished = anyio.Event()
        self._result: StageResult | None = None
        self._error: BaseException | None = None
        self._stop_requested: float | None = None

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def start(self) -> None:
        """Start the thread; the runner's CPU slot must already be held for it."""
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

        name = f"{STAGE_THREAD_PREFIX}{self.stage.name} {self.job.media_id}"
        try:
            threading.Thread(target=target, name=name, daemon=True).start()
        except BaseException:
            self._runner.limiter.release_on_behalf_of(self)
            raise

    def _returned(self) -> None:
        try:
            self._runner._release(self)
        finally:
            self._finished.set()

    async def result(self) -> StageResult:
        """Wait for the thread; its exception, if it raised one, is raised here."""
        await self._finished.wait()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    async def stop(self) -> None:
        """Signal the thread and wait for it up to the grace; then it is stuck. Call it shielded:
        the grace must run even when the job is being cancelled."""
        if self._stop_requested is None:
            self._stop_requested = time.monotonic()
        self.job.cancelled.set()
        with anyio.move_on_after(self._runner.grace_seconds):
            await self._finished.wait()
        if not self.finished:
            self._runner._mark_stuck(self, self._stop_requested)


async def _run_signalled(stage: Stage, job: Job) -> StageResult:
    """An async stage, with ``job.cancelled`` set the moment it is cancelled rather than when it
    next yields: a thread it waits on (tagging decodes frames in one) stops promptly too. What it
    raises comes wrapped in an ExceptionGroup."""

    async def signal_when_cancelled() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            job.cancelled.set()

    async with anyio.create_task_group() as group:
        group.start_soon(signal_when_cancelled)
        try:
            result = await stage.run(job)
        finally:
            group.cancel_scope.cancel()
    return result


def first_cause(error: BaseException) -> BaseException:
    """What an error (an ExceptionGroup unwrapped) comes down to: bad media first, then
    transient, then anything but a cancellation."""
    leaves: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        else:
            leaves.append(error)

    walk(error)
    for wanted in (BadMediaError, TransientError):
        for leaf in leaves:
            if isinstance(leaf, wanted):
                return leaf
    cancelled = anyio.get_cancelled_exc_class()
    for leaf in leaves:
        if not isinstance(leaf, cancelled):
            return leaf
    return error
