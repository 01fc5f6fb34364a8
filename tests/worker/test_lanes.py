"""Two lanes on moto with a real worker: fresh uploads go first, however deep the backfill, and
reserved slots let the backfill through a busy media queue."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client import REGISTRY

from mediamill_core.settings import Settings, load_settings
from mediamill_testkit.client import Uploader, raw_item
from mediamill_testkit.stages import SleepyStage
from stages import Stage
from stages.photo.stage import ThumbnailStage
from stages.probe.stage import ProbeStage
from worker.consumer import Worker
from worker.dev.devstack import Stack
from worker.dev.samples import write_jpeg, write_png
from worker.intake import LANE_SWITCH_WAIT
from worker.publish import PublishStage
from worker.registry import LoadedStage, StageRegistry, instantiate

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]
# Scheduling, the claim's own DynamoDB write and moto's round trips, on a busy 2-core machine.
SLACK_SECONDS = 1.5
LANES = ("media", "backfill")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def settings_for(stack_env: dict[str, str], **overrides: Any) -> Settings:
    fields = {name.removeprefix("MEDIAMILL_").lower(): value for name, value in stack_env.items()}
    return load_settings(**{**fields, **overrides})


def registry(*classes: type[Stage], options: dict[str, dict[str, Any]] | None = None) -> Any:
    options = options or {}
    return StageRegistry(
        [
            LoadedStage(stage=instantiate(cls, options.get(cls.name), cls.name))
            for cls in (ProbeStage, *classes, PublishStage)
        ]
    )


def to_backfill(sqs: Any, stack: Stack) -> int:
    """Every message on the media queue moved to the backfill queue, as a redrive there would."""
    moved = 0
    while True:
        got = sqs.receive_message(
            QueueUrl=stack.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        messages = got.get("Messages", [])
        if not messages:
            return moved
        for message in messages:
            sqs.send_message(QueueUrl=stack.backfill_queue_url, MessageBody=message["Body"])
            sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])
            moved += 1


def stamp(item: dict[str, Any], name: str) -> float:
    return datetime.fromisoformat(str(item[name])).timestamp()


def items(dynamodb: Any, stack: Stack, ids: list[str]) -> dict[str, dict[str, Any]]:
    found = {media_id: raw_item(dynamodb, stack.names.table, media_id) for media_id in ids}
    assert all(item is not None for item in found.values())
    return {media_id: item for media_id, item in found.items() if item is not None}


async def until(condition: Callable[[], bool], within: float = 60.0) -> None:
    """Poll the stack (in a thread: the worker shares this event loop) until ``condition``."""
    with anyio.fail_after(within):
        while not await anyio.to_thread.run_sync(condition):  # noqa: ASYNC110 - no event to wait on
            await anyio.sleep(0.1)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_fresh_uploads_finish_first_behind_a_deep_backfill(
    stack_env: dict[str, str], stack: Stack, sqs: Any, dynamodb: Any, tmp_path: Path
) -> None:
    settings = settings_for(stack_env, concurrency=2)
    uploader = Uploader(settings)
    # Forty photos whose upload events wait on the backfill queue, made before any worker runs.
    backlog = [
        uploader.upload(write_jpeg(tmp_path / f"old{i}.jpg", 640 + i, 480), "image/jpeg")
        for i in range(40)
    ]
    assert to_backfill(sqs, stack) >= 40
    fresh_photo = write_jpeg(tmp_path / "fresh.jpg", 800, 600)
    ready = {lane: sample("mediamill_jobs_total", outcome="ready", lane=lane) for lane in LANES}
    latencies = sample("mediamill_upload_to_done_seconds_count", outcome="ready")

    def ready_count(ids: list[str]) -> int:
        return sum(item.get("status") == "READY" for item in items(dynamodb, stack, ids).values())

    uploaded_at: dict[str, float] = {}
    worker = Worker(settings, registry(ThumbnailStage))
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        await until(lambda: ready_count(backlog) >= 4)
        # Fresh uploads while the backfill runs: each is on the media queue when its POST ends.
        for _ in range(3):
            before = time.time()
            media_id = await anyio.to_thread.run_sync(uploader.upload, fresh_photo, "image/jpeg")
            uploaded_at[media_id] = before
            await anyio.sleep(0.7)
        everything = [*backlog, *uploaded_at]
        await until(lambda: ready_count(everything) == len(everything), within=120)
        worker.request_stop()

    done = items(dynamodb, stack, [*backlog, *uploaded_at])
    assert {item["status"] for item in done.values()} == {"READY"}
    drained = max(stamp(done[media_id], "processed_at") for media_id in backlog)
    # The longest a slot took to free: a backfill job from its claim to READY.
    slot_frees_within = max(
        stamp(done[m], "processed_at") - stamp(done[m], "processing_started_at") for m in backlog
    )
    bound = slot_frees_within + LANE_SWITCH_WAIT + SLACK_SECONDS
    waits = {m: stamp(done[m], "processing_started_at") - at for m, at in uploaded_at.items()}
    finished = {m: stamp(done[m], "processed_at") - at for m, at in uploaded_at.items()}
    print(
        f"fresh waits {sorted(round(w, 2) for w in waits.values())} s, upload to READY "
        f"{sorted(round(f, 2) for f in finished.values())} s; a slot freed within "
        f"{slot_frees_within:.2f} s; the backfill drained {drained - max(uploaded_at.values()):.1f}"
        " s after the last fresh upload"
    )
    for media_id, wait in waits.items():
        # Taken as soon as a slot freed, not after the backlog ahead of it.
        assert wait <= bound, (wait, bound)
        assert stamp(done[media_id], "processed_at") < drained
    # The backfill was still deep when the last fresh upload was done.
    last_fresh = max(stamp(done[m], "processed_at") for m in uploaded_at)
    behind = [m for m in backlog if stamp(done[m], "processed_at") > last_fresh]
    assert len(behind) >= 10, len(behind)
    # Which lane each job came by is counted; upload-to-done is the fresh uploads' alone.
    assert (
        sample("mediamill_jobs_total", outcome="ready", lane="backfill") == ready["backfill"] + 40
    )
    assert sample("mediamill_jobs_total", outcome="ready", lane="media") == ready["media"] + 3
    assert sample("mediamill_upload_to_done_seconds_count", outcome="ready") == latencies + 3


def job_spans(log: Path) -> dict[str, tuple[float, float]]:
    """Media id to (start, end) of its sleepy stage, from the stage's own record."""
    spans: dict[str, list[float]] = {}
    for line in log.read_text().splitlines():
        what, media_id, _, at = line.split()
        spans.setdefault(media_id, [0.0, 0.0])[0 if what == "start" else 1] = float(at)
    return {media_id: (span[0], span[1]) for media_id, span in spans.items()}


async def run_both_lanes(
    stack_env: dict[str, str], stack: Stack, sqs: Any, tmp_path: Path, *, reserved: int
) -> tuple[list[str], list[str], dict[str, tuple[float, float]]]:
    """Six backfill jobs and ten fresh ones, all waiting when the worker starts."""
    settings = settings_for(stack_env, concurrency=2, backfill_reserved_slots=reserved)
    uploader = Uploader(settings)
    backlog = [uploader.upload(write_png(tmp_path / f"b{i}.png", 20 + i, 20)) for i in range(6)]
    to_backfill(sqs, stack)
    fresh = [uploader.upload(write_png(tmp_path / f"f{i}.png", 40 + i, 20)) for i in range(10)]
    log = tmp_path / "spans.log"
    options = {"sleepy": {"seconds": 0.4, "record_to": str(log), "stamp": True}}
    await Worker(settings, registry(SleepyStage, options=options), burst=True).run()
    return backlog, fresh, job_spans(log)


async def test_without_reserved_slots_the_backfill_waits_for_the_media_queue(
    stack_env: dict[str, str], stack: Stack, sqs: Any, tmp_path: Path
) -> None:
    backlog, fresh, spans = await run_both_lanes(stack_env, stack, sqs, tmp_path, reserved=0)
    assert set(spans) == {*backlog, *fresh}
    last_fresh_start = max(spans[m][0] for m in fresh)
    assert all(spans[m][0] > last_fresh_start for m in backlog)


async def test_reserved_slots_let_the_backfill_through_a_busy_media_queue(
    stack_env: dict[str, str], stack: Stack, sqs: Any, tmp_path: Path
) -> None:
    backlog, fresh, spans = await run_both_lanes(stack_env, stack, sqs, tmp_path, reserved=1)
    assert set(spans) == {*backlog, *fresh}
    last_fresh_start = max(spans[m][0] for m in fresh)
    alongside = sorted(spans[m] for m in backlog if spans[m][0] < last_fresh_start)
    # The backfill ran while fresh uploads waited, one job at a time: its one reserved slot.
    assert len(alongside) >= 2, alongside
    for (_, end), (next_start, _) in itertools.pairwise(alongside):
        assert next_start >= end - 0.05, alongside
