"""A stage that writes more than the upload's share of the spool says so, and the job holds it.

The share a job reserves before it spools comes from the upload's size alone; a stage that
knows, once the media is probed, that it writes more (the HLS ladder of a long video) asks for
the rest through ``Stage.scratch_bytes`` and the job holds that too until it ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import anyio
import pytest
import structlog

from mediamill_testkit.pipeline import make_pipeline, outcomes, run_job
from stages import Job, Stage, StageResult, TransientError
from worker.pipeline import Pipeline
from worker.spool import NEED_FLOOR, Spool, SpoolTooSmall

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    made = Spool(tmp_path / "spool", 4 * NEED_FLOOR, structlog.get_logger())
    made.open()
    yield made
    made.close()


class Writes(Stage):
    """Asks for ``extra`` bytes and records how much the spool held while it ran."""

    name = "writes"
    version = "1.0.0"
    extra: ClassVar[int] = 0
    held: ClassVar[list[int]] = []
    spool: ClassVar[Spool | None] = None

    def scratch_bytes(self, job: Job) -> int:
        return self.extra

    async def run(self, job: Job) -> StageResult:
        assert self.spool is not None
        self.held.append(self.spool.reserved)
        return StageResult()


class OptionalWrites(Writes):
    name = "optional-writes"
    optional = True


class Done(Stage):
    name = "done"
    version = "1.0.0"
    final = True

    async def run(self, job: Job) -> StageResult:
        return StageResult()


def pipeline_of(stage: type[Writes], spool: Spool, extra: int) -> Pipeline:
    stage.extra, stage.held, stage.spool = extra, [], spool
    return make_pipeline(stage, Done)


async def test_the_job_holds_what_its_stage_asks_for_until_it_ends(
    spool: Spool, tmp_path: Path
) -> None:
    pipeline = pipeline_of(Writes, spool, 2 * NEED_FLOOR)
    async with spool.reserve(1024, wait_seconds=0) as scratch:
        outcome = await run_job(pipeline, tmp_path, scratch=scratch)
        assert outcome.error is None
        assert Writes.held == [3 * NEED_FLOOR]  # the upload's floor and the stage's two
        assert scratch.bytes == spool.reserved == 3 * NEED_FLOOR  # held until the job ends
    assert spool.reserved == 0


async def test_a_stage_waits_for_its_share_while_another_job_holds_the_room(
    spool: Spool, tmp_path: Path
) -> None:
    pipeline = pipeline_of(Writes, spool, 2 * NEED_FLOOR)
    finished = anyio.Event()
    async with spool.reserve(1024, wait_seconds=5) as scratch:

        async def other_job() -> None:
            async with spool.reserve(NEED_FLOOR, wait_seconds=0):  # two floors: 3 of 4 taken
                await anyio.sleep(0.5)
            finished.set()

        async with anyio.create_task_group() as group:
            group.start_soon(other_job)
            await anyio.sleep(0.1)
            outcome = await run_job(pipeline, tmp_path, scratch=scratch)
            assert finished.is_set()  # it ran only once the other job gave its room back
        assert outcome.error is None
        assert Writes.held == [3 * NEED_FLOOR]


async def test_a_required_stage_without_room_in_time_leaves_the_job_for_later(
    spool: Spool, tmp_path: Path
) -> None:
    pipeline = pipeline_of(Writes, spool, 2 * NEED_FLOOR)
    async with (
        spool.reserve(NEED_FLOOR, wait_seconds=0),
        spool.reserve(1024, wait_seconds=0.3) as scratch,
    ):
        outcome = await run_job(pipeline, tmp_path, scratch=scratch)
        assert spool.reserved == 3 * NEED_FLOOR  # what it held, and no more
    assert isinstance(outcome.error, TransientError)
    assert not isinstance(outcome.error, SpoolTooSmall)
    assert "stage 'writes'" in str(outcome.error)
    assert "left for later" in str(outcome.error)
    assert Writes.held == []  # it never ran without its room
    assert outcome.error.retry_after == 0.3


async def test_an_optional_stage_this_worker_can_never_hold_is_deferred_at_once(
    spool: Spool, tmp_path: Path
) -> None:
    pipeline = pipeline_of(OptionalWrites, spool, 10 * NEED_FLOOR)
    async with spool.reserve(1024, wait_seconds=0) as scratch:
        outcome = await run_job(pipeline, tmp_path, scratch=scratch, within=2)
    assert outcome.error is None  # the job goes on without it
    assert outcomes(outcome)["optional-writes"] == "deferred"
    (record,) = [r for r in outcome.records if r.name == "optional-writes"]
    assert record.detail is not None
    assert "after 1 try" in record.detail  # no retry: it would never fit either
    assert "scratch space" in record.detail
    assert OptionalWrites.held == []


class Liar(Writes):
    name = "liar"

    def scratch_bytes(self, job: Job) -> int:
        return -5


async def test_a_size_that_is_not_one_is_a_bug_in_the_stage(spool: Spool, tmp_path: Path) -> None:
    pipeline = pipeline_of(Liar, spool, 0)
    async with spool.reserve(1024, wait_seconds=0) as scratch:
        outcome = await run_job(pipeline, tmp_path, scratch=scratch)
    assert isinstance(outcome.error, TypeError)
    assert "scratch_bytes gave -5" in str(outcome.error)
