"""Runs one job through the stage DAG: independent stages concurrently, CPU work in threads."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from structlog.typing import FilteringBoundLogger

from stages.contract import (
    BadMediaError,
    Job,
    JobCancelled,
    MediaKind,
    MediaSource,
    Rendition,
    Stage,
    StageRecord,
    StageResult,
    TransientError,
)
from worker import metrics
from worker.registry import StageRegistry


class StageTimeout(TransientError):
    """A stage ran past its timeout."""


@dataclass(slots=True)
class JobState:
    """What the stages of one job have produced so far."""

    kind: MediaKind | None = None
    results: dict[str, StageResult] = field(default_factory=dict)
    records: dict[str, StageRecord] = field(default_factory=dict)
    # Stages skipped because they are not for this kind: what requires them runs all the same.
    not_for_kind: set[str] = field(default_factory=set)

    def renditions(self, names: frozenset[str], order: tuple[Stage, ...]) -> dict[str, Rendition]:
        merged: dict[str, Rendition] = {}
        for stage in order:
            if stage.name in names and stage.name in self.results:
                for rendition in self.results[stage.name].renditions:
                    merged[rendition.name] = rendition
        return merged

    def metadata(self, names: frozenset[str], order: tuple[Stage, ...]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for stage in order:
            if stage.name in names and stage.name in self.results:
                merged.update(self.results[stage.name].metadata)
        return merged

    def warnings(self, names: frozenset[str] | None = None) -> list[str]:
        found: list[str] = []
        for name, result in self.results.items():
            if names is None or name in names:
                found.extend(f"{name}: {text}" for text in result.warnings)
        for name, record in self.records.items():
            if record.outcome == "warning" and record.detail and (names is None or name in names):
                found.append(f"{name}: {record.detail}")
        return found

    def ordered_records(self, order: tuple[Stage, ...]) -> list[StageRecord]:
        return [self.records[s.name] for s in order if s.name in self.records]


@dataclass(slots=True)
class JobOutcome:
    """What the stages did; ``error`` is what failed the job (None when every stage succeeded)."""

    kind: MediaKind | None
    metadata: dict[str, Any]
    renditions: dict[str, Rendition]
    records: list[StageRecord]
    warnings: list[str]
    error: BaseException | None = None


class Pipeline:
    """Runs the registry's DAG for one job at a time; many jobs may run concurrently."""

    def __init__(self, registry: StageRegistry, *, cpu_limiter: anyio.CapacityLimiter) -> None:
        self.registry = registry
        self.cpu_limiter = cpu_limiter

    async def run(
        self,
        source: MediaSource,
        original: Path,
        workdir: Path,
        *,
        attempt: int,
        max_attempts: int,
        log: FilteringBoundLogger,
    ) -> JobOutcome:
        """Run every stage, final ones (publish) last; a failure stops the rest of the job.

        The outcome's ``error`` is a BadMediaError (permanent), a TransientError (retry later) or
        any other exception (a bug); cancellation (shutdown) propagates as usual.
        """
        state = JobState()
        error: BaseException | None = None
        done = {stage.name: anyio.Event() for stage in self.registry.order}
        thread_cancel: list[Any] = []

        async def run_one(stage: Stage) -> None:
            try:
                for dep in self.registry.ancestors[stage.name]:
                    await done[dep].wait()
                await self._run_stage(
                    stage,
                    state,
                    source,
                    original,
                    workdir,
                    attempt,
                    max_attempts,
                    log,
                    thread_cancel,
                )
            finally:
                done[stage.name].set()

        try:
            async with anyio.create_task_group() as group:
                for stage in self.registry.order:
                    group.start_soon(run_one, stage)
        except Exception as group_error:
            # One stage's failure cancelled the others; keep the one that caused it.
            error = _first_cause(group_error)
        finally:
            for event in thread_cancel:
                event.set()

        order = self.registry.order
        everything = frozenset(state.results)
        return JobOutcome(
            kind=state.kind,
            metadata=state.metadata(everything, order),
            renditions=state.renditions(everything, order),
            records=state.ordered_records(order),
            warnings=state.warnings(),
            error=error,
        )

    async def _run_stage(
        self,
        stage: Stage,
        state: JobState,
        source: MediaSource,
        original: Path,
        workdir: Path,
        attempt: int,
        max_attempts: int,
        log: FilteringBoundLogger,
        thread_cancel: list[Any],
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
                or (dep in needed and dep not in state.results and dep not in state.not_for_kind)
            )
        ]
        if failed_deps:
            self._record(state, stage, "skipped", 0.0, f"requires {', '.join(sorted(failed_deps))}")
            return
        if state.kind is None and stage.kinds != frozenset(MediaKind):
            raise RuntimeError(
                f"stage {stage.name!r} accepts only {sorted(stage.kinds)} but runs before any "
                "stage decided the media kind: it must require 'probe'"
            )
        if state.kind is not None and state.kind not in stage.kinds:
            state.not_for_kind.add(stage.name)
            self._record(state, stage, "skipped", 0.0, f"not for {state.kind.value}")
            return

        stage_dir = workdir / stage.name
        stage_dir.mkdir(parents=True, exist_ok=True)
        order = self.registry.order
        job = Job(
            source=source,
            original=original,
            workdir=stage_dir,
            kind=state.kind,
            attempt=attempt,
            max_attempts=max_attempts,
            renditions=state.renditions(ancestors, order),
            metadata=state.metadata(ancestors, order),
            options=stage.options,
            log=log.bind(stage=stage.name),
            records=tuple(r for r in state.ordered_records(order) if r.name in ancestors),
            warnings=tuple(state.warnings(ancestors)),
        )
        thread_cancel.append(job.cancelled)
        started = time.monotonic()
        try:
            result = await self._call(stage, job)
        except BadMediaError as exc:
            if stage.optional:
                self._finish(state, stage, "warning", started, str(exc))
                return
            self._finish(state, stage, "failed", started, str(exc))
            raise
        except TransientError as exc:
            if stage.optional and job.last_attempt:
                self._finish(state, stage, "warning", started, str(exc))
                return
            self._finish(state, stage, "failed", started, str(exc))
            raise
        except Exception as exc:
            if not stage.optional:
                self._finish(state, stage, "failed", started, f"{type(exc).__name__}: {exc}")
                raise
            job.log.warning("optional_stage_failed", exc_info=True)
            self._finish(state, stage, "warning", started, f"{type(exc).__name__}: {exc}")
            return
        if not isinstance(result, StageResult):
            raise TypeError(
                f"stage {stage.name!r} returned {type(result).__name__}, not StageResult"
            )
        if result.kind is not None:
            if state.kind is not None and state.kind is not result.kind:
                raise RuntimeError(f"stage {stage.name!r} changed the media kind")
            state.kind = result.kind
        clashes = {r.name for r in result.renditions} & set(
            state.renditions(frozenset(state.results), order)
        )
        if clashes:
            raise RuntimeError(f"stage {stage.name!r} produced renditions already made: {clashes}")
        state.results[stage.name] = result
        self._finish(state, stage, "warning" if result.warnings else "ok", started, None)

    async def _call(self, stage: Stage, job: Job) -> StageResult:
        try:
            with anyio.fail_after(stage.timeout):
                if stage.cpu_bound:
                    return await anyio.to_thread.run_sync(
                        stage.run_sync, job, limiter=self.cpu_limiter, abandon_on_cancel=True
                    )
                return await stage.run(job)
        except TimeoutError:
            job.cancelled.set()
            raise StageTimeout(
                f"stage {stage.name!r} timed out after {stage.timeout:g} s"
            ) from None
        except JobCancelled:
            raise StageTimeout(f"stage {stage.name!r} was cancelled") from None
        finally:
            job.cancelled.set()

    def _finish(
        self, state: JobState, stage: Stage, outcome: str, started: float, detail: str | None
    ) -> None:
        self._record(state, stage, outcome, time.monotonic() - started, detail)

    def _record(
        self, state: JobState, stage: Stage, outcome: str, seconds: float, detail: str | None
    ) -> None:
        state.records[stage.name] = StageRecord(
            name=stage.name, version=stage.version, outcome=outcome, seconds=seconds, detail=detail
        )
        if outcome != "skipped":
            kind = state.kind.value if state.kind else "unknown"
            metrics.STAGE_SECONDS.labels(stage.name, kind, outcome).observe(seconds)


def _first_cause(group: BaseException) -> BaseException:
    """The exception that failed the job: bad media first, then transient, then anything."""
    leaves: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        else:
            leaves.append(error)

    walk(group)
    for wanted in (BadMediaError, TransientError):
        for leaf in leaves:
            if isinstance(leaf, wanted):
                return leaf
    cancelled = anyio.get_cancelled_exc_class()
    for leaf in leaves:
        if not isinstance(leaf, cancelled):
            return leaf
    return group
