"""The pipeline runner on small stages: concurrency, threads, visibility, failures, timeouts."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import ClassVar

import anyio
import anyio.lowlevel
import pytest

from mediamill_testkit.pipeline import make_pipeline, outcomes, run_job
from stages import (
    BadMediaError,
    Job,
    MediaKind,
    Rendition,
    Stage,
    StageResult,
    TransientError,
)
from worker.job_state import JobOutcome
from worker.pipeline import StageTimeout


class Seen:
    """What the stages of one test saw, keyed by stage name (reset by the autouse fixture)."""

    jobs: ClassVar[dict[str, Job]] = {}
    threads: ClassVar[dict[str, threading.Thread]] = {}
    events: ClassVar[dict[str, anyio.Event]] = {}
    saw_cancel: ClassVar[threading.Event] = threading.Event()


@pytest.fixture(autouse=True)
def _reset_seen() -> None:
    Seen.jobs = {}
    Seen.threads = {}
    Seen.events = {}
    Seen.saw_cancel = threading.Event()


class Recording(Stage):
    """An async stage that records the job it received and returns ``result()``."""

    version = "1.0.0"

    async def run(self, job: Job) -> StageResult:
        Seen.jobs[self.name] = job
        return self.result(job)

    def result(self, job: Job) -> StageResult:
        return StageResult()


class Done(Recording):
    name = "done"
    final = True


async def run_pipeline(
    tmp_path: Path, *classes: type[Stage], attempt: int = 1, max_attempts: int = 3
) -> JobOutcome:
    """Run one job through ``classes`` plus the final ``Done`` stage."""
    pipeline = make_pipeline(*classes, Done)
    return await run_job(pipeline, tmp_path, attempt=attempt, max_attempts=max_attempts)


def rendition(tmp_path: Path, name: str) -> Rendition:
    path = tmp_path / f"{name}.bin"
    path.write_bytes(name.encode())
    return Rendition(name=name, path=path, content_type="application/octet-stream")


# --- concurrency and threads ---------------------------------------------------------------


class Ping(Recording):
    name = "ping"

    async def run(self, job: Job) -> StageResult:
        Seen.events.setdefault(self.name, anyio.Event()).set()
        await Seen.events.setdefault("pong", anyio.Event()).wait()
        return StageResult()


class Pong(Recording):
    name = "pong"

    async def run(self, job: Job) -> StageResult:
        Seen.events.setdefault(self.name, anyio.Event()).set()
        await Seen.events.setdefault("ping", anyio.Event()).wait()
        return StageResult()


async def test_independent_stages_run_concurrently(tmp_path: Path) -> None:
    # Each waits for the other to have started: run one after the other, they would deadlock
    # and fail_after would end the test.
    outcome = await run_pipeline(tmp_path, Ping, Pong)
    assert outcome.error is None
    assert outcomes(outcome) == {"ping": "ok", "pong": "ok", "done": "ok"}


class Cpu(Stage):
    name = "cpu"
    version = "1.0.0"
    cpu_bound = True

    def run_sync(self, job: Job) -> StageResult:
        Seen.threads[self.name] = threading.current_thread()
        return StageResult(metadata={"cpu": True})


async def test_cpu_bound_stage_runs_off_the_event_loop_thread(tmp_path: Path) -> None:
    outcome = await run_pipeline(tmp_path, Cpu)
    assert outcome.error is None
    assert outcome.metadata == {"cpu": True}
    assert Seen.threads["cpu"] is not threading.current_thread()


# --- what a stage sees ---------------------------------------------------------------------


class Other(Recording):
    """Unrelated to the chain below; finishes before the chain starts."""

    name = "other"

    def result(self, job: Job) -> StageResult:
        Seen.events.setdefault("other-finished", anyio.Event()).set()
        return StageResult(
            renditions=[rendition(job.workdir, "other-r")], metadata={"from_other": 1}
        )


class Maker(Recording):
    name = "maker"

    async def run(self, job: Job) -> StageResult:
        await Seen.events.setdefault("other-finished", anyio.Event()).wait()
        await anyio.lowlevel.checkpoint()  # let Other's task store its result
        return await super().run(job)

    def result(self, job: Job) -> StageResult:
        return StageResult(
            renditions=[rendition(job.workdir, "maker-r")], metadata={"from_maker": 1}
        )


class Middle(Recording):
    name = "middle"
    requires = ("maker",)

    def result(self, job: Job) -> StageResult:
        return StageResult(metadata={"from_middle": 2, "from_maker": 2})


class User(Recording):
    name = "user"
    requires = ("middle",)


async def test_a_stage_sees_what_its_ancestors_made_and_nothing_else(tmp_path: Path) -> None:
    outcome = await run_pipeline(tmp_path, Other, Maker, Middle, User)
    assert outcome.error is None

    user = Seen.jobs["user"]
    assert set(user.renditions) == {"maker-r"}
    assert user.renditions["maker-r"].path.read_bytes() == b"maker-r"
    # A later stage's metadata wins over an earlier one's.
    assert dict(user.metadata) == {"from_maker": 2, "from_middle": 2}
    assert [record.name for record in user.records] == ["maker", "middle"]
    assert Seen.jobs["maker"].renditions == {}
    assert dict(Seen.jobs["maker"].metadata) == {}

    # The final stage sees every stage; the outcome holds everything.
    done = Seen.jobs["done"]
    assert set(done.renditions) == {"maker-r", "other-r"}
    assert set(outcome.renditions) == {"maker-r", "other-r"}
    assert outcome.metadata == {"from_maker": 2, "from_middle": 2, "from_other": 1}


async def test_each_stage_gets_its_own_workdir_and_the_original(tmp_path: Path) -> None:
    await run_pipeline(tmp_path, Maker, Other)
    assert Seen.jobs["maker"].workdir == tmp_path / "work" / "maker"
    assert Seen.jobs["other"].workdir == tmp_path / "work" / "other"
    assert Seen.jobs["maker"].original.read_bytes() == b"not really media"
    assert Seen.jobs["maker"].log is not None


# --- failures ------------------------------------------------------------------------------


class Corrupt(Recording):
    name = "corrupt"

    def result(self, job: Job) -> StageResult:
        raise BadMediaError("the file ends in the middle of a frame")


class AfterCorrupt(Recording):
    name = "after-corrupt"
    requires = ("corrupt",)


async def test_bad_media_in_a_required_stage_fails_the_job(tmp_path: Path) -> None:
    outcome = await run_pipeline(tmp_path, Corrupt, AfterCorrupt)
    assert isinstance(outcome.error, BadMediaError)
    assert str(outcome.error) == "the file ends in the middle of a frame"
    states = outcomes(outcome)
    assert states["corrupt"] == "failed"
    assert states.get("after-corrupt", "skipped") == "skipped"
    assert states.get("done", "skipped") == "skipped"
    assert "after-corrupt" not in Seen.jobs
    assert "done" not in Seen.jobs


class Broken(Recording):
    name = "broken"
    optional = True

    def result(self, job: Job) -> StageResult:
        raise ZeroDivisionError("bug in an optional stage")


class AfterBroken(Recording):
    name = "after-broken"
    requires = ("broken",)


class Independent(Recording):
    name = "independent"


async def test_optional_stage_failure_is_a_warning_and_skips_its_dependents(
    tmp_path: Path,
) -> None:
    outcome = await run_pipeline(tmp_path, Broken, AfterBroken, Independent)
    assert outcome.error is None
    states = outcomes(outcome)
    assert states["broken"] == "warning"
    assert states["independent"] == "ok"
    assert states["done"] == "ok"
    assert outcome.warnings == ["broken: ZeroDivisionError: bug in an optional stage"]
    # What it depended on was never made: a dependent must not run without it.
    assert states["after-broken"] == "skipped"
    assert "after-broken" not in Seen.jobs


class GroupedCorrupt(Recording):
    """Finds the media bad inside a task group of its own, as publish uploads in one."""

    name = "grouped-corrupt"

    async def run(self, job: Job) -> StageResult:
        async def part() -> None:
            raise BadMediaError("the second track is unreadable")

        async with anyio.create_task_group() as group:
            group.start_soon(part)
        return StageResult()


class GroupedThrottled(Recording):
    name = "grouped-throttled"

    async def run(self, job: Job) -> StageResult:
        async def part() -> None:
            raise TransientError("slow down", retry_after=7.0)

        async with anyio.create_task_group() as group:
            group.start_soon(part)
        return StageResult()


async def test_an_error_inside_a_stages_task_group_is_classified_by_its_cause(
    tmp_path: Path,
) -> None:
    bad = await run_pipeline(tmp_path / "bad", GroupedCorrupt)
    assert isinstance(bad.error, BadMediaError)
    [record] = [r for r in bad.records if r.name == "grouped-corrupt"]
    assert (record.outcome, record.detail) == ("failed", "the second track is unreadable")

    throttled = await run_pipeline(tmp_path / "throttled", GroupedThrottled)
    assert isinstance(throttled.error, TransientError)
    assert throttled.error.retry_after == 7.0  # the queue's backoff honours it
    [record] = [r for r in throttled.records if r.name == "grouped-throttled"]
    assert (record.outcome, record.detail) == ("failed", "slow down")


class Stuck(Stage):
    """A thread-run stage that stops only when told to, and tidies up before it returns."""

    name = "stuck"
    version = "1.0.0"
    cpu_bound = True
    timeout = 0.2

    def run_sync(self, job: Job) -> StageResult:
        if job.cancelled.wait(10):
            Seen.saw_cancel.set()
            time.sleep(0.2)  # a partial output being closed and deleted
            (job.workdir / "tidied").write_text("done")
            job.check_cancelled()
        return StageResult()


class StuckAsync(Recording):
    name = "stuck-async"
    timeout = 0.2

    async def run(self, job: Job) -> StageResult:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


async def test_thread_stage_timeout_is_transient_and_waits_for_the_thread(tmp_path: Path) -> None:
    pipeline = make_pipeline(Stuck, Done)
    outcome = await run_job(pipeline, tmp_path)
    assert isinstance(outcome.error, StageTimeout)
    assert isinstance(outcome.error, TransientError)
    assert outcome.error.stopped
    assert "'stuck'" in str(outcome.error)
    assert "timed out" in str(outcome.error)
    assert outcomes(outcome)["stuck"] == "failed"
    # Told to stop, and waited for: by the time the job ends (and its directory is removed by
    # the caller), the thread has finished, and its CPU slot is free again.
    assert Seen.saw_cancel.is_set()
    assert (tmp_path / "work" / "stuck" / "tidied").read_text() == "done"
    assert pipeline.runner.limiter.borrowed_tokens == 0
    assert pipeline.health_problems() == []


async def test_async_stage_timeout_is_a_stage_timeout(tmp_path: Path) -> None:
    outcome = await run_pipeline(tmp_path, StuckAsync)
    assert isinstance(outcome.error, StageTimeout)
    assert "'stuck-async' timed out after 0.2 s" in str(outcome.error)
    assert "done" not in Seen.jobs


class OwnTimeout(Recording):
    """Raises a TimeoutError of its own well within its stage timeout."""

    name = "own-timeout"

    async def run(self, job: Job) -> StageResult:
        raise TimeoutError("the socket timed out")


async def test_a_stages_own_timeout_error_is_not_taken_for_its_stage_timeout(
    tmp_path: Path,
) -> None:
    outcome = await run_pipeline(tmp_path, OwnTimeout)
    assert isinstance(outcome.error, TimeoutError)
    assert not isinstance(outcome.error, StageTimeout)
    [record] = [r for r in outcome.records if r.name == "own-timeout"]
    assert record.detail == "TimeoutError: the socket timed out"


# --- media kinds ---------------------------------------------------------------------------


class Kinder(Recording):
    """Decides the kind, as probe does."""

    name = "kinder"

    def result(self, job: Job) -> StageResult:
        return StageResult(kind=MediaKind.IMAGE, metadata={"kind": "image"})


class VideoOnly(Recording):
    name = "video-only"
    kinds = frozenset({MediaKind.VIDEO})
    requires = ("kinder",)


class ImageOnly(Recording):
    name = "image-only"
    kinds = frozenset({MediaKind.IMAGE})
    requires = ("kinder",)


async def test_stage_for_another_kind_is_skipped_and_the_job_still_finishes(
    tmp_path: Path,
) -> None:
    outcome = await run_pipeline(tmp_path, Kinder, VideoOnly, ImageOnly)
    assert outcome.error is None
    assert outcome.kind is MediaKind.IMAGE
    states = outcomes(outcome)
    assert states["video-only"] == "skipped"
    assert "video-only" not in Seen.jobs
    assert states["image-only"] == "ok"
    assert Seen.jobs["image-only"].kind is MediaKind.IMAGE
    # A stage that does not apply must not stop the final stage: publish would never run.
    assert states["done"] == "ok"
    assert "done" in Seen.jobs


class AfterEither(Recording):
    """Uses whichever of the per-kind stages applied, as tagging uses thumbnail or transcode."""

    name = "after-either"
    requires = ("video-only", "image-only")


class AfterVideoOnly(Recording):
    name = "after-video-only"
    kinds = frozenset({MediaKind.VIDEO})
    requires = ("video-only",)


class AfterTheSkipped(Recording):
    """Requires a stage that was itself skipped because its own requirement failed."""

    name = "after-skipped"
    requires = ("after-corrupt-optional",)


class AfterCorruptOptional(Recording):
    name = "after-corrupt-optional"
    requires = ("corrupt-optional",)


class CorruptOptional(Recording):
    name = "corrupt-optional"
    optional = True
    requires = ("kinder",)

    def result(self, job: Job) -> StageResult:
        raise BadMediaError("cannot")


async def test_a_requirement_that_is_not_for_this_kind_does_not_skip_what_needs_it(
    tmp_path: Path,
) -> None:
    outcome = await run_pipeline(
        tmp_path, Kinder, VideoOnly, ImageOnly, AfterEither, AfterVideoOnly
    )
    states = outcomes(outcome)
    assert states["video-only"] == "skipped"
    assert states["after-either"] == "ok"
    assert "after-either" in Seen.jobs
    assert states["after-video-only"] == "skipped"


async def test_a_requirement_skipped_for_failure_still_skips_what_needs_it(
    tmp_path: Path,
) -> None:
    outcome = await run_pipeline(
        tmp_path, Kinder, CorruptOptional, AfterCorruptOptional, AfterTheSkipped
    )
    states = outcomes(outcome)
    assert states["corrupt-optional"] == "warning"
    assert states["after-corrupt-optional"] == "skipped"
    assert states["after-skipped"] == "skipped"
    assert "after-skipped" not in Seen.jobs


class EagerImageOnly(Recording):
    name = "eager"
    kinds = frozenset({MediaKind.IMAGE})


async def test_kind_restricted_stage_before_the_kind_is_known_is_an_error(
    tmp_path: Path,
) -> None:
    outcome = await run_pipeline(tmp_path, EagerImageOnly)
    assert outcome.error is not None
    assert "'eager'" in str(outcome.error)
    assert "must require 'probe'" in str(outcome.error)
    assert "eager" not in Seen.jobs


# --- renditions and provenance -------------------------------------------------------------


class ThumbA(Recording):
    name = "thumb-a"

    def result(self, job: Job) -> StageResult:
        return StageResult(renditions=[rendition(job.workdir, "thumb")])


class ThumbB(Recording):
    name = "thumb-b"

    def result(self, job: Job) -> StageResult:
        return StageResult(renditions=[rendition(job.workdir, "thumb")])


async def test_two_stages_making_the_same_rendition_is_an_error(tmp_path: Path) -> None:
    outcome = await run_pipeline(tmp_path, ThumbA, ThumbB)
    assert outcome.error is not None
    assert "renditions already made" in str(outcome.error)
    assert "thumb" in str(outcome.error)
    assert "done" not in Seen.jobs


class Warns(Recording):
    name = "warns"
    version = "2.1.0"

    def result(self, job: Job) -> StageResult:
        return StageResult(warnings=["colour profile ignored"])


class OptionalCorrupt(Corrupt):
    name = "optional-corrupt"
    optional = True


async def test_provenance_records_name_version_outcome_and_seconds(tmp_path: Path) -> None:
    outcome = await run_pipeline(tmp_path, Kinder, Warns, OptionalCorrupt)
    assert outcome.error is None
    rows = [record.as_dict() for record in outcome.records]
    assert [row["name"] for row in rows] == ["kinder", "optional-corrupt", "warns", "done"]
    by_name = {row["name"]: row for row in rows}
    assert by_name["warns"]["version"] == "2.1.0"
    assert by_name["kinder"]["version"] == "1.0.0"
    assert by_name["kinder"]["outcome"] == "ok"
    assert by_name["warns"]["outcome"] == "warning"
    assert by_name["optional-corrupt"]["outcome"] == "warning"
    assert by_name["optional-corrupt"]["detail"] == "the file ends in the middle of a frame"
    for row in rows:
        assert isinstance(row["seconds"], float)
        assert 0 <= row["seconds"] < 5
    assert sorted(outcome.warnings) == [
        "optional-corrupt: the file ends in the middle of a frame",
        "warns: colour profile ignored",
    ]
    # The final stage receives the records of the stages before it, to store with the item.
    assert [record.name for record in Seen.jobs["done"].records] == [
        "kinder",
        "optional-corrupt",
        "warns",
    ]
