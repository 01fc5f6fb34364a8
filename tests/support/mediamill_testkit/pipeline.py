"""Build a pipeline from a few stage classes and run one job through it, as the worker does."""

from __future__ import annotations

from pathlib import Path

import anyio
import structlog

from stages import MediaSource, Stage
from worker.job_state import JobOutcome
from worker.pipeline import Pipeline
from worker.registry import LoadedStage, StageRegistry, instantiate
from worker.spool import Reservation


def make_pipeline(
    *classes: type[Stage],
    grace: float = 2.0,
    cpu_threads: int = 2,
    cpu_limiter: anyio.CapacityLimiter | None = None,
    options: dict[str, dict[str, object]] | None = None,
) -> Pipeline:
    """A pipeline of ``classes`` (one of them final), their options validated as at load.

    Pipelines given the same ``cpu_limiter`` share the cores, as the jobs of one worker do.
    """
    options = options or {}
    loaded = [LoadedStage(stage=instantiate(c, options.get(c.name), c.name)) for c in classes]
    return Pipeline(
        StageRegistry(loaded),
        cpu_limiter=cpu_limiter or anyio.CapacityLimiter(cpu_threads),
        grace_seconds=grace,
    )


def write_original(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    original = directory / "original"
    original.write_bytes(b"not really media")
    return original


async def run_job(
    pipeline: Pipeline,
    directory: Path,
    *,
    media_id: str = "m-1",
    attempt: int = 1,
    max_attempts: int = 3,
    within: float = 5,
    scratch: Reservation | None = None,
) -> JobOutcome:
    """One job in ``directory`` (its original, and ``work`` as the job's directory), holding
    ``scratch`` as its share of a spool when given."""
    source = MediaSource(media_id, "owner-1", "originals", f"originals/{media_id}", "etag", 16)
    with anyio.fail_after(within):
        return await pipeline.run(
            source,
            write_original(directory),
            directory / "work",
            attempt=attempt,
            max_attempts=max_attempts,
            log=structlog.get_logger(),
            scratch=scratch,
        )


def outcomes(outcome: JobOutcome) -> dict[str, str]:
    return {record.name: record.outcome for record in outcome.records}
