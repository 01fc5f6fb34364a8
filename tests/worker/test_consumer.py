"""The worker in-process against moto's server: the whole flow of one upload and its failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client import REGISTRY

from mediamill_core.settings import Settings
from mediamill_testkit.client import (
    Uploader,
    drain_events,
    queue_counts,
    raw_item,
    resend_test_event,
)
from mediamill_testkit.dead_letters import registry
from mediamill_testkit.stages import BuggyStage, CopyStage, FlakyStage, RejectStage, SleepyStage
from worker.consumer import Worker
from worker.dev.devstack import Stack
from worker.dev.samples import write_png
from worker.registry import StageRegistry

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def run_burst(settings: Settings, reg: StageRegistry) -> Worker:
    worker = Worker(settings, reg, burst=True)
    await worker.run()
    return worker


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    return write_png(tmp_path / "photo.png", 64, 48)


def dlq_bodies(sqs: Any, stack: Stack) -> list[str]:
    got = sqs.receive_message(QueueUrl=stack.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [m["Body"] for m in got.get("Messages", [])]


async def test_upload_becomes_ready_with_renditions_metadata_and_event(
    settings: Settings,
    stack: Stack,
    photo: Path,
    s3: Any,
    sqs: Any,
    dynamodb: Any,
    media_events: str,
) -> None:
    ignored_before = metric("mediamill_jobs_total", outcome="ignored", lane="media")
    resend_test_event(s3, sqs, stack.names.originals_bucket, stack.queue_url)
    uploader = Uploader(settings)
    media_id = uploader.upload(photo)

    await run_burst(settings, registry(CopyStage))

    view = uploader.get(media_id)
    assert view["status"] == "READY"
    assert view["kind"] == "image"
    assert view["metadata"]["width"] == 64
    assert view["metadata"]["height"] == 48
    assert view["metadata"]["copied"] is True
    assert [s["name"] for s in view["stages"]] == ["probe", "copy", "publish"]
    assert all(s["outcome"] == "ok" and s["seconds"] >= 0 for s in view["stages"])
    item = raw_item(dynamodb, stack.names.table, media_id)
    assert item is not None
    key = f"{media_id}/{item['source']['tag']}/copy.png"
    head = s3.head_object(Bucket=stack.names.renditions_bucket, Key=key)
    assert head["ContentType"] == "image/png"
    assert "immutable" in head["CacheControl"]
    assert head["ContentLength"] == len(await anyio.Path(photo).read_bytes())
    assert view["renditions"]["copy"]["width"] == 64
    assert item["renditions"]["copy"]["key"] == key
    assert item["source"]["etag"]
    assert "event_pending" not in item
    # The s3:TestEvent that configuring the notification sent was acknowledged and ignored.
    assert metric("mediamill_jobs_total", outcome="ignored", lane="media") >= ignored_before + 1
    assert queue_counts(sqs, stack.queue_url) == (0, 0)
    events = drain_events(sqs, media_events)
    assert [(e["type"], e["media_id"]) for e in events] == [("media.processed", media_id)]
    assert events[0]["renditions"]["copy"]["key"] == key
    assert "location" not in events[0]


async def test_same_event_twice_gives_one_ready_item_and_one_key(
    settings: Settings,
    stack: Stack,
    photo: Path,
    s3: Any,
    sqs: Any,
    media_events: str,
    tmp_path: Path,
) -> None:
    uploader = Uploader(settings)
    media_id = uploader.upload(photo)
    # Duplicate every message in the queue, as SQS's at-least-once delivery may.
    got = sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    for message in got["Messages"]:
        sqs.send_message(QueueUrl=stack.queue_url, MessageBody=message["Body"])
        sqs.change_message_visibility(
            QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    log = tmp_path / "copies.log"
    await run_burst(settings, registry(CopyStage, options={"copy": {"record_to": str(log)}}))

    assert uploader.get(media_id)["status"] == "READY"
    listed = s3.list_objects_v2(Bucket=stack.names.renditions_bucket, Prefix=f"{media_id}/")
    [key] = [o["Key"] for o in listed["Contents"]]
    assert key.startswith(f"{media_id}/")
    assert key.endswith("/copy.png")
    events = [e for e in drain_events(sqs, media_events) if e["media_id"] == media_id]
    assert [e["type"] for e in events] == ["media.processed"]
    assert queue_counts(sqs, stack.queue_url) == (0, 0)
    assert dlq_bodies(sqs, stack) == []


async def test_finished_upload_delivered_again_is_acknowledged_without_work(
    settings: Settings, stack: Stack, photo: Path, sqs: Any, tmp_path: Path
) -> None:
    uploader = Uploader(settings)
    media_id = uploader.upload(photo)
    got = sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    bodies = [m["Body"] for m in got["Messages"]]
    for message in got["Messages"]:
        sqs.change_message_visibility(
            QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    log = tmp_path / "copies.log"
    reg = registry(CopyStage, options={"copy": {"record_to": str(log)}})
    await run_burst(settings, reg)
    first = uploader.get(media_id)
    duplicates = metric("mediamill_jobs_total", outcome="duplicate", lane="media")

    for body in bodies:
        sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)
    await run_burst(settings, reg)

    assert log.read_text().count("copy ") == 1
    assert metric("mediamill_jobs_total", outcome="duplicate", lane="media") == duplicates + 1
    assert uploader.get(media_id)["updated_at"] == first["updated_at"]
    assert queue_counts(sqs, stack.queue_url) == (0, 0)


async def test_bad_media_fails_the_item_with_its_reason_and_deletes_the_message(
    settings: Settings, stack: Stack, photo: Path, sqs: Any, media_events: str
) -> None:
    uploader = Uploader(settings)
    media_id = uploader.upload(photo)

    await run_burst(settings, registry(RejectStage, CopyStage))

    view = uploader.get(media_id)
    assert view["status"] == "FAILED"
    assert view["error"] == "the picture is upside down and inside out"
    assert view["renditions"] == {}
    outcomes = {s["name"]: s["outcome"] for s in view["stages"]}
    assert outcomes["probe"] == "ok"
    assert outcomes["reject"] == "failed"
    assert queue_counts(sqs, stack.queue_url) == (0, 0)
    assert dlq_bodies(sqs, stack) == []
    events = drain_events(sqs, media_events)
    assert [(e["type"], e["error"]) for e in events] == [
        ("media.failed", "the picture is upside down and inside out")
    ]


async def test_file_that_is_not_media_ends_failed_unsupported(
    settings: Settings, stack: Stack, tmp_path: Path, sqs: Any
) -> None:
    fake = tmp_path / "holiday.jpg"
    fake.write_bytes(b"<!DOCTYPE html><html><body>not a photo</body></html>")
    uploader = Uploader(settings)
    media_id = uploader.upload(fake, "image/jpeg")

    await run_burst(settings, registry())

    view = uploader.get(media_id)
    assert view["status"] == "FAILED"
    assert view["error"].startswith("unsupported media type")
    assert queue_counts(sqs, stack.queue_url) == (0, 0)


async def test_transient_error_is_retried_then_ready(
    settings: Settings, stack: Stack, photo: Path, sqs: Any
) -> None:
    uploader = Uploader(settings)
    media_id = uploader.upload(photo)
    retries = metric("mediamill_jobs_total", outcome="retry", lane="media")

    await run_burst(settings, registry(FlakyStage, options={"flaky": {"failures": 1}}))

    view = uploader.get(media_id)
    assert view["status"] == "READY"
    assert view["metadata"]["flaky_attempt"] == 2
    assert metric("mediamill_jobs_total", outcome="retry", lane="media") == retries + 1
    assert queue_counts(sqs, stack.queue_url) == (0, 0)


async def test_message_that_always_fails_reaches_the_dlq_while_others_are_served(
    settings: Settings, stack: Stack, photo: Path, sqs: Any, tmp_path: Path
) -> None:
    uploader = Uploader(settings)
    doomed = uploader.upload(photo)  # 64 px wide: the bug hits it
    healthy = uploader.upload(write_png(tmp_path / "small.png", 32, 32))
    dlq_bound = metric("mediamill_messages_left_for_dlq_total", reason="error")

    await run_burst(settings, registry(BuggyStage, options={"buggy": {"min_width": 60}}))

    assert uploader.get(healthy)["status"] == "READY"
    doomed_item = uploader.get(doomed)
    # The owner sees a final state, not an upload stuck in PROCESSING.
    assert doomed_item["status"] == "FAILED"
    assert "after 3 attempts" in doomed_item["error"]
    assert "ZeroDivisionError" in doomed_item["error"]
    bodies = dlq_bodies(sqs, stack)
    assert len(bodies) == 1
    record = json.loads(json.loads(bodies[0])["Message"])["Records"][0]
    assert doomed in record["s3"]["object"]["key"]
    assert metric("mediamill_messages_left_for_dlq_total", reason="error") == dlq_bound + 1
    assert queue_counts(sqs, stack.queue_url) == (0, 0)


async def test_malformed_messages_are_left_for_the_dlq_and_never_stop_the_worker(
    settings: Settings, stack: Stack, photo: Path, sqs: Any
) -> None:
    garbage = ["", "not json", "[1, 2]", '{"Records": "nope"}', "\x00\xff" * 10]
    for body in garbage:
        if body:
            sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)
    uploader = Uploader(settings)
    media_id = uploader.upload(photo)
    malformed = metric("mediamill_malformed_messages_total")

    await run_burst(settings, registry())

    assert uploader.get(media_id)["status"] == "READY"
    assert sorted(dlq_bodies(sqs, stack)) == sorted(b for b in garbage if b)
    # Each was seen on every one of its 3 receives and never deleted.
    assert metric("mediamill_malformed_messages_total") == malformed + 3 * 4


async def test_job_longer_than_the_visibility_timeout_runs_once(
    stack_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    stack: Stack,
    photo: Path,
    sqs: Any,
    tmp_path: Path,
) -> None:
    for name, value in {**stack_env, "MEDIAMILL_VISIBILITY_TIMEOUT": "2"}.items():
        monkeypatch.setenv(name, value)
    from mediamill_core.settings import load_settings

    settings = load_settings()
    uploader = Uploader(settings)
    media_id = uploader.upload(photo)
    log = tmp_path / "sleepy.log"
    extensions = metric("mediamill_sqs_visibility_extensions_total")

    await run_burst(
        settings, registry(SleepyStage, options={"sleepy": {"seconds": 5, "record_to": str(log)}})
    )

    assert log.read_text().splitlines() == [f"start {media_id} 1", f"done {media_id} 1"]
    assert uploader.get(media_id)["status"] == "READY"
    assert metric("mediamill_sqs_visibility_extensions_total") >= extensions + 3
    assert queue_counts(sqs, stack.queue_url) == (0, 0)


async def test_upload_without_an_item_is_acknowledged_and_counted(
    settings: Settings, stack: Stack, s3: Any, sqs: Any
) -> None:
    orphans = metric("mediamill_orphan_uploads_total")
    s3.put_object(Bucket=stack.names.originals_bucket, Key="originals/" + "a" * 32, Body=b"x")

    await run_burst(settings, registry())

    assert metric("mediamill_orphan_uploads_total") == orphans + 1
    assert queue_counts(sqs, stack.queue_url) == (0, 0)
    assert dlq_bodies(sqs, stack) == []


async def test_a_watcher_is_told_as_each_job_ends(
    settings: Settings, stack: Stack, s3: Any
) -> None:
    for n in range(3):
        key = f"originals/{n:032d}"
        s3.put_object(Bucket=stack.names.originals_bucket, Key=key, Body=b"x")
    told: list[tuple[int, int]] = []
    worker = Worker(
        settings,
        registry(),
        burst=True,
        on_job_done=lambda done: told.append((done, worker.jobs_done)),
    )

    await worker.run()

    # In the step that ended the job, with the count already counting it.
    assert told == [(1, 1), (2, 2), (3, 3)]


async def test_object_outside_the_originals_layout_is_left_for_the_dlq(
    settings: Settings, stack: Stack, s3: Any, sqs: Any
) -> None:
    s3.put_object(Bucket=stack.names.originals_bucket, Key="originals/../escape.jpg", Body=b"x")

    await run_burst(settings, registry())

    bodies = dlq_bodies(sqs, stack)
    assert len(bodies) == 1
    assert "escape.jpg" in bodies[0]


async def test_never_more_jobs_in_hand_than_free_slots(
    stack_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    stack: Stack,
    sqs: Any,
    tmp_path: Path,
) -> None:
    for name, value in {**stack_env, "MEDIAMILL_CONCURRENCY": "2"}.items():
        monkeypatch.setenv(name, value)
    from mediamill_core.settings import load_settings

    settings = load_settings()
    uploader = Uploader(settings)
    ids = [uploader.upload(write_png(tmp_path / f"p{i}.png", 20 + i, 20)) for i in range(5)]
    log = tmp_path / "sleepy.log"

    await run_burst(
        settings,
        registry(SleepyStage, options={"sleepy": {"seconds": 0.5, "record_to": str(log)}}),
    )

    running = peak = 0
    for line in log.read_text().splitlines():
        running += 1 if line.startswith("start") else -1
        peak = max(peak, running)
    assert peak == 2  # concurrent, and never beyond MEDIAMILL_CONCURRENCY
    assert all(uploader.get(media_id)["status"] == "READY" for media_id in ids)
    assert queue_counts(sqs, stack.queue_url) == (0, 0)


async def test_media_event_that_could_not_be_sent_is_sent_by_the_sweep(
    stack_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    stack: Stack,
    photo: Path,
    sqs: Any,
    dynamodb: Any,
    media_events: str,
) -> None:
    from mediamill_core.settings import load_settings

    for name, value in stack_env.items():
        monkeypatch.setenv(name, value)
    good = load_settings(event_grace_seconds=1, sweep_interval_seconds=0.2)
    monkeypatch.setenv("MEDIAMILL_MEDIA_TOPIC_ARN", stack.media_topic_arn + "-missing")
    broken_topic = load_settings()
    media_id = Uploader(good).upload(photo)

    await run_burst(broken_topic, registry())

    item = raw_item(dynamodb, stack.names.table, media_id)
    assert item is not None
    assert item["status"] == "READY"
    assert item["event_pending"] is True  # READY is stored, the event is still owed
    # The upload is done: its message is gone, and nothing is processed again for the event.
    assert queue_counts(sqs, stack.queue_url) == (0, 0)
    assert dlq_bodies(sqs, stack) == []
    assert drain_events(sqs, media_events) == []

    # Once the topic works, a worker's sweep sends what was owed, once.
    worker = Worker(good, registry(), burst=False)
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        for _ in range(100):
            if not (raw_item(dynamodb, stack.names.table, media_id) or {}).get("event_pending"):
                break
            await anyio.sleep(0.2)
        worker.request_stop()

    events = drain_events(sqs, media_events)
    assert [(e["type"], e["media_id"]) for e in events] == [("media.processed", media_id)]
    assert events[0]["occurred_at"] == item["processed_at"]
    item = raw_item(dynamodb, stack.names.table, media_id)
    assert item is not None
    assert "event_pending" not in item
    assert "owed_shard" not in item
