"""Stages that misbehave on purpose, controlled by their declared options."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from stages import (
    BadMediaError,
    Job,
    Rendition,
    Stage,
    StageOptions,
    StageResult,
    TransientError,
)


def _record(path: str | None, line: str) -> None:
    if path:
        with Path(path).open("a") as out:
            out.write(line + "\n")


class SleepyOptions(StageOptions):
    seconds: float = 0.0
    record_to: str | None = None
    stamp: bool = False  # each record line ends with the wall-clock time, in epoch seconds


class SleepyStage(Stage):
    """Takes ``seconds`` in a worker thread, checking for cancellation; records each run."""

    name = "sleepy"
    version = "1.0.0"
    requires = ("probe",)
    cpu_bound = True
    timeout = 120.0
    Options = SleepyOptions

    def run_sync(self, job: Job) -> StageResult:
        options = self.options
        assert isinstance(options, SleepyOptions)
        at = f" {time.time():.3f}" if options.stamp else ""
        _record(options.record_to, f"start {job.media_id} {job.attempt}{at}")
        deadline = time.monotonic() + options.seconds
        while time.monotonic() < deadline:
            job.check_cancelled()
            time.sleep(0.05)
        at = f" {time.time():.3f}" if options.stamp else ""
        _record(options.record_to, f"done {job.media_id} {job.attempt}{at}")
        return StageResult(metadata={"slept": options.seconds})


class FlakyOptions(StageOptions):
    failures: int = 1  # attempts that fail before one succeeds
    retry_after: float | None = None


class FlakyStage(Stage):
    """Raises TransientError on the first ``failures`` attempts."""

    name = "flaky"
    version = "1.0.0"
    requires = ("probe",)
    Options = FlakyOptions

    async def run(self, job: Job) -> StageResult:
        options = self.options
        assert isinstance(options, FlakyOptions)
        if job.attempt <= options.failures:
            raise TransientError("service throttled", retry_after=options.retry_after)
        return StageResult(metadata={"flaky_attempt": job.attempt})


class RejectOptions(StageOptions):
    reason: str = "the picture is upside down and inside out"


class RejectStage(Stage):
    """Raises BadMediaError: the upload is unusable."""

    name = "reject"
    version = "1.0.0"
    requires = ("probe",)
    Options = RejectOptions

    async def run(self, job: Job) -> StageResult:
        options = self.options
        assert isinstance(options, RejectOptions)
        raise BadMediaError(options.reason)


class BuggyOptions(StageOptions):
    min_width: int = 0  # only images at least this wide hit the bug


class BuggyStage(Stage):
    """Raises an unexpected exception on every attempt (a bug)."""

    name = "buggy"
    version = "1.0.0"
    requires = ("probe",)
    Options = BuggyOptions

    async def run(self, job: Job) -> StageResult:
        options = self.options
        assert isinstance(options, BuggyOptions)
        if int(job.metadata.get("width") or 0) >= options.min_width:
            raise ZeroDivisionError("bug in stage")
        return StageResult()


class ThreadCheckStage(Stage):
    """Records which thread a cpu_bound stage ran on."""

    name = "threadcheck"
    version = "1.0.0"
    cpu_bound = True

    def run_sync(self, job: Job) -> StageResult:
        return StageResult(metadata={"thread": threading.current_thread().name})


class CopyOptions(StageOptions):
    record_to: str | None = None


class CopyStage(Stage):
    """Publishes the original itself as rendition ``copy`` (a stand-in for a real rendition)."""

    name = "copy"
    version = "1.0.0"
    requires = ("probe",)
    cpu_bound = True
    Options = CopyOptions

    def run_sync(self, job: Job) -> StageResult:
        options = self.options
        assert isinstance(options, CopyOptions)
        _record(options.record_to, f"copy {job.media_id} {job.attempt}")
        target = job.workdir / "copy.png"
        target.write_bytes(job.original.read_bytes())
        width = job.metadata.get("width")
        height = job.metadata.get("height")
        return StageResult(
            renditions=[Rendition("copy", target, "image/png", width, height)],
            metadata={"copied": True},
        )


# What an original carries to crash the worker that processes it (see CrashStage).
CRASH_MARKER = b"mediamill-chaos:crash-the-decoder"


class CrashOptions(StageOptions):
    marker: str = CRASH_MARKER.decode()


class CrashStage(Stage):
    """SIGKILLs its own process when the original carries the marker, on every attempt.

    Stands in for what no exception handler survives: the kernel's OOM killer, or a decoder
    crashing the process. Originals without the marker pass untouched.
    """

    name = "crash"
    version = "1.0.0"
    requires = ("probe",)
    cpu_bound = True
    Options = CrashOptions

    def run_sync(self, job: Job) -> StageResult:
        options = self.options
        assert isinstance(options, CrashOptions)
        if options.marker.encode() in job.original.read_bytes():
            os.kill(os.getpid(), signal.SIGKILL)
        return StageResult()


ALL = (
    CopyStage,
    SleepyStage,
    FlakyStage,
    RejectStage,
    BuggyStage,
    ThreadCheckStage,
    CrashStage,
)
