"""One media id, several objects: the newest object wins, whatever the order of events and jobs.

A presigned POST can be used again until it expires, and S3 announces uploads late and out of
order. The events here are written as S3 writes them, with the sequencers S3 would give two
uploads of one key; the objects are real photos in moto's bucket.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from mediamill_core.keys import original_key
from mediamill_core.settings import Settings
from mediamill_testkit.client import Uploader, drain_events, queue_counts, raw_item
from stages import Job, Stage, StageOptions, StageResult
from stages.photo.stage import ThumbnailStage
from stages.probe.stage import ProbeStage
from worker.consumer import Worker
from worker.dev.devstack import Stack
from worker.dev.samples import write_jpeg
from worker.publish import PublishStage
from worker.registry import LoadedStage, StageRegistry, instantiate

pytestmark = pytest.mark.anyio

PARIS = (48.8584, 2.2945)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class GateOptions(StageOptions):
    gate_dir: str


class GateStage(Stage):
    """Holds each job until the test opens its gate (a file named after the object's ETag)."""

    name = "gate"
    version = "1.0.0"
    requires = ("probe",)
    cpu_bound = True
    timeout = 60.0
    Options = GateOptions

    def run_sync(self, job: Job) -> StageResult:
        options = self.options
        assert isinstance(options, GateOptions)
        gates = Path(options.gate_dir)
        (gates / f"{job.source.etag}.started").touch()
        while not (gates / job.source.etag).exists():
            job.check_cancelled()
            time.sleep(0.02)
        return StageResult()


def registry(gate_dir: Path | None = None) -> StageRegistry:
    classes: list[tuple[type[Stage], dict[str, Any] | None]] = [
        (ProbeStage, None),
        (ThumbnailStage, None),
        (PublishStage, None),
    ]
    if gate_dir is not None:
        classes.append((GateStage, {"gate_dir": str(gate_dir)}))
    return StageRegistry(
        [LoadedStage(stage=instantiate(cls, options, cls.name)) for cls, options in classes]
    )


class Uploads:
    """Objects put under one media id, and the S3 events announcing them, sent when we say."""

    def __init__(self, settings: Settings, stack: Stack, s3: Any, sqs: Any, tmp: Path) -> None:
        self.settings = settings
        self.stack = stack
        self.s3 = s3
        self.sqs = sqs
        self.tmp = tmp
        first = write_jpeg(tmp / "first.jpg", 640, 480, gps=PARIS)
        self.uploader = Uploader(settings)
        self.media_id = str(self.uploader.create(first, "image/jpeg")["media_id"])
        self.events: dict[str, str] = {}
        self.etags: dict[str, str] = {}

    def put(self, name: str, path: Path, sequencer: str) -> str:
        """Store ``path`` as the original (replacing what was there); keep its event for later."""
        key = original_key(self.media_id)
        body = path.read_bytes()
        answer = self.s3.put_object(
            Bucket=self.stack.names.originals_bucket, Key=key, Body=body, ContentType="image/jpeg"
        )
        etag = answer["ETag"].strip('"')
        # moto announces the put at once, with a fixed sequencer: ours say what S3 would.
        self._drop_announcements()
        self.etags[name] = etag
        self.events[name] = json.dumps(
            {
                "Records": [
                    {
                        "eventVersion": "2.1",
                        "eventSource": "aws:s3",
                        "awsRegion": "us-east-1",
                        "eventTime": "2026-01-01T00:00:00.000Z",
                        "eventName": "ObjectCreated:Post",
                        "s3": {
                            "s3SchemaVersion": "1.0",
                            "bucket": {"name": self.stack.names.originals_bucket},
                            "object": {
                                "key": key,
                                "size": len(body),
                                "eTag": etag,
                                "sequencer": sequencer,
                            },
                        },
                    }
                ]
            }
        )
        return etag

    def announce(self, name: str) -> None:
        self.sqs.send_message(QueueUrl=self.stack.queue_url, MessageBody=self.events[name])

    def _drop_announcements(self) -> None:
        while True:
            got = self.sqs.receive_message(
                QueueUrl=self.stack.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            messages = got.get("Messages", [])
            if not messages:
                return
            for message in messages:
                self.sqs.delete_message(
                    QueueUrl=self.stack.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )


@pytest.fixture
def uploads(settings: Settings, stack: Stack, s3: Any, sqs: Any, tmp_path: Path) -> Uploads:
    return Uploads(settings, stack, s3, sqs, tmp_path)


def rendition_keys(s3: Any, stack: Stack, media_id: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=stack.names.renditions_bucket, Prefix=f"{media_id}/")
    return sorted(entry["Key"] for entry in listed.get("Contents", []))


def assert_ready_for(
    uploads: Uploads, dynamodb: Any, s3: Any, name: str, size: tuple[int, int]
) -> dict[str, Any]:
    item = raw_item(dynamodb, uploads.stack.names.table, uploads.media_id)
    assert item is not None
    assert item["status"] == "READY", item.get("error")
    assert item["source"]["etag"] == uploads.etags[name]
    assert (item["metadata"]["width"], item["metadata"]["height"]) == size
    # Only this object's renditions exist, under its own prefix; nothing else is left.
    tag = item["source"]["tag"]
    keys = sorted(rendition["key"] for rendition in item["renditions"].values())
    assert keys
    assert all(key.startswith(f"{uploads.media_id}/{tag}/") for key in keys)
    assert rendition_keys(s3, uploads.stack, uploads.media_id) == keys
    return item


async def burst(settings: Settings, reg: StageRegistry) -> None:
    await Worker(settings, reg, burst=True).run()


@asynccontextmanager
async def running(settings: Settings, reg: StageRegistry) -> AsyncIterator[Worker]:
    worker = Worker(settings, reg, burst=False)
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        try:
            yield worker
        finally:
            worker.request_stop()


async def until(path: Path, seconds: float = 30) -> None:
    for _ in range(int(seconds / 0.05)):
        if await anyio.Path(path).exists():
            return
        await anyio.sleep(0.05)
    raise AssertionError(f"{path.name} never appeared")


async def until_status(dynamodb: Any, uploads: Uploads, status: str, etag: str) -> None:
    for _ in range(600):
        item = raw_item(dynamodb, uploads.stack.names.table, uploads.media_id) or {}
        if item.get("status") == status and item.get("source", {}).get("etag") == etag:
            return
        await anyio.sleep(0.05)
    raise AssertionError(f"never {status} for {etag}")


@pytest.mark.parametrize("order", ["older_first", "newer_first"])
async def test_the_newest_object_wins_whichever_event_arrives_first(
    uploads: Uploads,
    settings: Settings,
    dynamodb: Any,
    s3: Any,
    sqs: Any,
    media_events: str,
    tmp_path: Path,
    order: str,
) -> None:
    # S3's sequencers for one key grow with each write, and may differ in length.
    uploads.put("old", write_jpeg(tmp_path / "old.jpg", 640, 480, gps=PARIS), "0055B5D5A1")
    old_renditions: list[str] = []
    if order == "older_first":
        uploads.announce("old")
        await burst(settings, registry())
        old = assert_ready_for(uploads, dynamodb, s3, "old", (640, 480))
        assert old["location"]["latitude"] == pytest.approx(PARIS[0], abs=1e-3)
        old_renditions = rendition_keys(s3, uploads.stack, uploads.media_id)
    uploads.put("new", write_jpeg(tmp_path / "new.jpg", 400, 300), "0055B5D5A1FF01")
    uploads.announce("new")
    if order == "newer_first":
        uploads.announce("old")  # late, out of order
    await burst(settings, registry())

    item = assert_ready_for(uploads, dynamodb, s3, "new", (400, 300))
    # Nothing derived from the old object survives: no location, no old renditions.
    assert "location" not in item
    assert not set(old_renditions) & set(rendition_keys(s3, uploads.stack, uploads.media_id))
    if order == "newer_first":
        assert item["attempts"] == 1  # the late event for the old object ran nothing
    events = [e for e in drain_events(sqs, media_events) if e["type"] == "media.processed"]
    assert events[-1]["renditions"] == {
        name: {k: v for k, v in r.items() if k in ("key", "content_type", "width", "height")}
        for name, r in item["renditions"].items()
    }
    assert queue_counts(sqs, uploads.stack.queue_url) == (0, 0)

    # A late event for the old object once the new one is READY changes nothing.
    before = raw_item(dynamodb, uploads.stack.names.table, uploads.media_id)
    uploads.announce("old")
    await burst(settings, registry())
    assert raw_item(dynamodb, uploads.stack.names.table, uploads.media_id) == before


@pytest.mark.parametrize("first_to_finish", ["old", "new"])
async def test_a_job_for_an_older_object_never_overwrites_the_newer(
    uploads: Uploads,
    settings: Settings,
    dynamodb: Any,
    s3: Any,
    sqs: Any,
    tmp_path: Path,
    first_to_finish: str,
) -> None:
    gates = tmp_path / "gates"
    gates.mkdir()
    concurrent = settings.model_copy(update={"concurrency": 2})
    old_etag = uploads.put("old", write_jpeg(tmp_path / "old.jpg", 640, 480, gps=PARIS), "0A")
    async with running(concurrent, registry(gates)):
        uploads.announce("old")
        await until(gates / f"{old_etag}.started")  # the old job has its original spooled
        new_etag = uploads.put("new", write_jpeg(tmp_path / "new.jpg", 400, 300), "0B")
        uploads.announce("new")
        await until(gates / f"{new_etag}.started")  # the new object took the item over
        second = new_etag if first_to_finish == "old" else old_etag
        (gates / (old_etag if first_to_finish == "old" else new_etag)).touch()
        await anyio.sleep(1.0)
        (gates / second).touch()
        await until_status(dynamodb, uploads, "READY", new_etag)
        for _ in range(100):  # the outdated job's clean-up after its refused write
            if len(rendition_keys(s3, uploads.stack, uploads.media_id)) == 2:
                break
            await anyio.sleep(0.1)

    item = assert_ready_for(uploads, dynamodb, s3, "new", (400, 300))
    assert "location" not in item
    assert queue_counts(sqs, uploads.stack.queue_url) == (0, 0)


async def test_uploading_again_through_the_api_replaces_the_photo(
    settings: Settings, stack: Stack, s3: Any, dynamodb: Any, tmp_path: Path
) -> None:
    # moto gives every event one fixed sequencer: the order is then S3's current object.
    first = write_jpeg(tmp_path / "first.jpg", 640, 480, gps=PARIS)
    uploader = Uploader(settings)
    created = uploader.create(first, "image/jpeg")
    media_id = created["media_id"]
    post = created["upload"]
    from mediamill_testkit.client import presigned_post

    presigned_post(post["url"], post["fields"], first.read_bytes(), first.name)
    await burst(settings, registry())
    assert uploader.get(media_id)["location"]["latitude"] == pytest.approx(PARIS[0], abs=1e-3)

    second = write_jpeg(tmp_path / "second.jpg", 400, 300)
    presigned_post(post["url"], post["fields"], second.read_bytes(), second.name)
    await burst(settings, registry())

    view = uploader.get(media_id)
    assert view["status"] == "READY"
    assert (view["metadata"]["width"], view["metadata"]["height"]) == (400, 300)
    assert view["location"] is None
    item = raw_item(dynamodb, stack.names.table, media_id)
    assert item is not None
    assert "location" not in item
    assert len(rendition_keys(s3, stack, media_id)) == len(item["renditions"])
