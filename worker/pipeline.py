"""Runs one job through the stage DAG: independent stages concurrently, CPU work in threads.

A required stage's failure stops the job; an optional stage's never does. Its TransientErrors
are retried here within its retry budget, then it is ``deferred`` (a later reprocess finds it);
other failures are warnings. Either way its ``unfinished_metadata`` is merged in its place.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
from structlog.typing import FilteringBoundLogger

from stages.contract import (
    BadMediaError,
    Job,
    MediaKind,
    MediaSource,
    Stage,
    StageRecord,
    StageResult,
    StoresAhead,
    TransientError,
)
from worker import metrics
from worker.job_state import JobOutcome, JobState
from worker.registry import StageRegistry
from worker.spool import Reservation, SpoolTooSmall
from worker.stage_runner import StageRunner, StageTimeout, first_cause

# First in-process retry of an optional stage after about this long, doubling each time, when
# the error gives no retry_after.
_RETRY_BASE_SECONDS = 1.0


class Pipeline:
    """Runs the registry's DAG for one job at a time; many jobs may run concurrently."""

    def __init__(
        self,
        registry: StageRegistry,
        *,
        cpu_limiter: anyio.CapacityLimiter,
        grace_seconds: float,
    ) -> None:
        self.registry = registry
        self.runner = StageRunner(cpu_limiter, grace_seconds=grace_seconds)
        # By then every stage of a job has ended, timed out or been given up (one grace, for
        # the stage whose timeout ends the job): a job still running is held by a stage that
        # ignores cancellation.
        self.limit_seconds = registry.critical_path_seconds() + grace_seconds
        self._running: dict[object, _Watch] = {}

    def health_problems(self) -> list[str]:
        """Stuck stage threads, and jobs running past what their stage timeouts allow."""
        now = time.monotonic()
        problems = self.runner.health_problems()
        for watch in self._running.values():
            ran = now - watch.started - watch.waited
            if ran > self.limit_seconds:
                problems.append(
                    f"job {watch.media_id} has run its stages for {ran:.0f} s, past the "
                    f"{self.limit_seconds:g} s their timeouts and the grace allow"
                )
        return problems

    @contextmanager
    def _watched(self, media_id: str) -> Iterator[_Watch]:
        """While a job runs, health_problems can see how long it has."""
        key = object()
        watch = _Watch(media_id, time.monotonic())
        self._running[key] = watch
        try:
            yield watch
        finally:
            del self._running[key]

    async def run(
        self,
        source: MediaSource,
        original: Path,
        workdir: Path,
        *,
        attempt: int,
        max_attempts: int,
        log: FilteringBoundLogger,
        only: frozenset[str] | None = None,
        state: JobState | None = None,
        stores_ahead: StoresAhead | None = None,
        scratch: Reservation | None = None,
    ) -> JobOutcome:
        """Run every stage, final ones (publish) last; a failure stops the rest of the job.

        The outcome's ``error`` is a BadMediaError (permanent), a TransientError (retry later) or
        any other exception (a bug); cancellation (shutdown) propagates as usual. Either way it
        returns only once every stage thread of the job has returned or been found stuck.

        A reprocess runs ``only`` some stages, on a ``state`` that holds what the item stored for
        the others they depend on; the outcome is then of those stages alone. ``stores_ahead``
        is handed to every stage's job: what publishes its renditions, when that is the
        registry's publish. ``scratch`` is the job's share of the spool: it grows by what a
        stage says it writes beyond it (``Stage.scratch_bytes``) before that stage runs.
        """
        with self._watched(source.media_id) as watch:
            state = state or JobState()
            running = tuple(
                stage for stage in self.registry.order if only is None or stage.name in only
            )
            error: BaseException | None = None
            done = {stage.name: anyio.Event() for stage in running}

            def make_job(stage: Stage) -> Job:
                ancestors = self.registry.ancestors[stage.name]
                order = self.registry.order
                renditions = state.renditions(ancestors, order)
                if stage.reads_renditions is not None:
                    renditions = {
                        name: rendition
                        for name, rendition in renditions.items()
                        if name in stage.reads_renditions
                    }
                return Job(
                    source=source,
                    original=original,
                    workdir=workdir / stage.name,
                    kind=state.kind,
                    attempt=attempt,
                    max_attempts=max_attempts,
                    renditions=renditions,
                    metadata=state.metadata(ancestors, order),
                    options=stage.options,
                    log=log.bind(stage=stage.name),
                    records=tuple(r for r in state.ordered_records(order) if r.name in ancestors),
                    warnings=tuple(state.warnings(ancestors)),
                    stores_ahead=stores_ahead,
                )

            async def run_one(stage: Stage) -> None:
                try:
                    for dep in self.registry.ancestors[stage.name]:
                        if dep in done:  # not run again: what it stored is in the state
                            await done[dep].wait()
                    await self._run_stage(stage, state, make_job, scratch, watch)
                finally:
                    done[stage.name].set()

            try:
                async with anyio.create_task_group() as group:
                    for stage in running:
                        group.start_soon(run_one, stage)
            except Exception as group_error:
                # One stage's failure cancelled the others; keep the one that caused it.
                error = first_cause(group_error)

            order = self.registry.order
            ran = frozenset(done)
            everything = (frozenset(state.results) | frozenset(state.unfinished)) & ran
            return JobOutcome(
                kind=state.kind,
                metadata=state.metadata(everything, order),
                renditions=state.renditions(everything, order),
                records=[r for r in state.ordered_records(order) if r.name in ran],
                warnings=state.warnings(ran),
                error=error,
            )

    async def _run_stage(
        self,
        stage: Stage,
        state: JobState,
        make_job: Callable[[Stage], Job],
        scratch: Reservation | None,
        watch: _Watch,
    ) -> None:
        ancestors = self.registry.ancestors[stage.name]
        needed = self.registry.requirements[stage.name]
        # A stage cannot run without what it requires (skipped, or an optional one that failed),
        # unless the requirement is not for this kind at all (thumbnail for a video); a final
        # stage also waits for the others but runs whatever they did. A failed required stage
        # fails the job: the check covers the moment before its cancellation arrives.
        failed_deps = [
            dep
            for dep in ancestors
            if dep in state.records
            and (
                state.records[dep].outcome == "failed"
                or (dep in needed and not state.has_result(dep) and dep not in state.not_for_kind)
            )
        ]
        if failed_deps:
            detail = f"requires {', '.join(sorted(failed_deps))}"
            if all(state.records[dep].outcome == "deferred" for dep in failed_deps):
                # Missing only what a later reprocess will make: deferred with it.
                self._without_result(state, stage, "deferred", "deferred", None, detail)
            elif stage.optional:
                self._without_result(state, stage, "skipped", "failed", None, detail)
            else:
                self._record(state, stage, "skipped", None, detail)
            return
        if state.kind is None and stage.kinds != frozenset(MediaKind):
            raise RuntimeError(
                f"stage {stage.name!r} accepts only {sorted(stage.kinds)} but runs before any "
                "stage decided the media kind: it must require 'probe'"
            )
        if state.kind is not None and state.kind not in stage.kinds:
            state.not_for_kind.add(stage.name)
            self._record(state, stage, "skipped", None, f"not for {state.kind.value}")
            return

        started = time.monotonic()
        tries = 0
        unheld = scratch  # asked for until granted; once held, it is held for every retry
        while True:
            tries += 1
            job = make_job(stage)
            if tries > 1:  # each try starts from an empty directory, as the first did
                await anyio.to_thread.run_sync(shutil.rmtree, job.workdir, True)
            job.workdir.mkdir(parents=True, exist_ok=True)
            try:
                if unheld is not None:
                    await _hold_scratch(stage, job, unheld, watch)
                    unheld = None
                result = await self.runner.call(stage, job)
            except Exception as raised:
                error = first_cause(raised)  # a stage's own task group wraps what it raised
            else:
                break
            if not stage.optional:
                self._record(state, stage, "failed", started, _describe(error))
                raise error
            if not isinstance(error, TransientError):
                if not isinstance(error, BadMediaError):
                    job.log.warning("optional_stage_failed", exc_info=error)
                self._without_result(state, stage, "warning", "failed", started, _describe(error))
                return
            wait = self._retry_wait(stage, error, tries, started)
            if wait is None:
                spent = time.monotonic() - started
                tried = "1 try" if tries == 1 else f"{tries} tries"
                detail = f"deferred after {tried} in {spent:.1f} s: {error}"
                job.log.warning("optional_stage_deferred", tries=tries, error=str(error))
                self._without_result(state, stage, "deferred", "deferred", started, detail)
                return
            metrics.OPTIONAL_STAGE_RETRIES.labels(stage.name).inc()
            job.log.info(
                "optional_stage_retry", error=str(error), tries=tries, in_seconds=round(wait, 3)
            )
            await anyio.sleep(wait)

        if not isinstance(result, StageResult):
            raise TypeError(
                f"stage {stage.name!r} returned {type(result).__name__}, not StageResult"
            )
        if result.kind is not None:
            if state.kind is not None and state.kind is not result.kind:
                raise RuntimeError(f"stage {stage.name!r} changed the media kind")
            state.kind = result.kind
        order = self.registry.order
        clashes = {r.name for r in result.renditions} & set(
            state.renditions(frozenset(state.results), order)
        )
        if clashes:
            raise RuntimeError(f"stage {stage.name!r} produced renditions already made: {clashes}")
        state.results[stage.name] = result
        self._record(state, stage, "warning" if result.warnings else "ok", started, None)

    @staticmethod
    def _retry_wait(
        stage: Stage, error: TransientError, tries: int, started: float
    ) -> float | None:
        """How long before an optional stage's next try; None when its budget is spent."""
        budget = stage.budget
        if tries >= budget.attempts:
            return None
        if isinstance(error, StageTimeout) and not error.stopped:
            return None  # its thread still runs: another try would run beside it
        if isinstance(error, SpoolTooSmall):
            return None  # this worker never has the room: another try would not either
        if error.retry_after is not None:
            wait = float(error.retry_after)
        else:
            wait = _RETRY_BASE_SECONDS * 2 ** (tries - 1) * random.uniform(0.8, 1.2)
        if time.monotonic() + wait - started > budget.seconds:
            return None
        return wait

    def _without_result(
        self,
        state: JobState,
        stage: Stage,
        outcome: str,
        unfinished: str,
        started: float | None,
        detail: str,
    ) -> None:
        """Record a stage that made nothing, and keep what its unfinished_metadata gives."""
        self._record(state, stage, outcome, started, detail)
        state.unfinished[stage.name] = dict(stage.unfinished_metadata(unfinished, detail))

    def _record(
        self,
        state: JobState,
        stage: Stage,
        outcome: str,
        started: float | None,  # None: it never ran
        detail: str | None,
    ) -> None:
        seconds = 0.0 if started is None else time.monotonic() - started
        state.records[stage.name] = StageRecord(
            name=stage.name, version=stage.version, outcome=outcome, seconds=seconds, detail=detail
        )
        if outcome != "skipped":
            kind = state.kind.value if state.kind else "unknown"
            metrics.STAGE_SECONDS.labels(stage.name, kind, outcome).observe(seconds)


@dataclass(slots=True)
class _Watch:
    """A running job, for health_problems: since when, less what it spent waiting for space."""

    media_id: str
    started: float
    waited: float = 0.0


async def _hold_scratch(stage: Stage, job: Job, scratch: Reservation, watch: _Watch) -> None:
    """Grow the job's share of the spool by what ``stage`` says it writes beyond it."""
    extra = stage.scratch_bytes(job)
    if isinstance(extra, bool) or not isinstance(extra, int) or extra < 0:
        raise TypeError(f"stage {stage.name!r}: scratch_bytes gave {extra!r}, not a size in bytes")
    if not extra:
        return
    job.log.info("scratch_reserved", bytes=extra, job_bytes=scratch.bytes + extra)
    began = time.monotonic()
    try:
        await scratch.grow(extra, why=f"stage {stage.name!r}")
    finally:
        watch.waited += time.monotonic() - began


def _describe(error: BaseException) -> str:
    """A stage error as recorded: its own message, or a bug's type and message."""
    if isinstance(error, BadMediaError | TransientError):
        return str(error)
    return f"{type(error).__name__}: {error}"
