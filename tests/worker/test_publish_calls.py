"""What publish asks of S3, counted by the worker's own AWS call counter, against moto."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import structlog

from mediamill_core.items import encode
from mediamill_core.keys import new_media_id
from mediamill_core.settings import Settings
from stages.contract import Job, MediaKind, MediaSource, Rendition, StageContext
from worker import metrics
from worker.aws import open_clients
from worker.claims import Lease, StoredObject
from worker.dev.samples import write_jpeg
from worker.publish import PublishOptions, PublishStage
from worker.rendition_store import SINGLE_PUT_BYTES
from worker.store import SOLE_OBJECT, MediaStore

ETAG = "etag-1"
TAG = "0123456789ab"


def _item(media_id: str, *, sole: bool) -> dict[str, Any]:
    item: dict[str, Any] = {
        "media_id": media_id,
        "owner": "alice",
        "status": "PROCESSING",
        "created_at": "2024-01-01T00:00:00.000Z",
        "source": {"bucket": "b", "key": f"originals/{media_id}", "etag": ETAG, "tag": TAG},
    }
    if sole:
        item[SOLE_OBJECT] = True
    return item


def _job(media_id: str, renditions: dict[str, Rendition], workdir: Path) -> Job:
    return Job(
        source=MediaSource(media_id, "alice", "b", f"originals/{media_id}", ETAG, 10, tag=TAG),
        original=workdir / "original",
        workdir=workdir,
        kind=MediaKind.IMAGE,
        attempt=1,
        max_attempts=3,
        renditions=renditions,
        metadata={},
        options=PublishOptions(),
        log=structlog.get_logger(),
    )


def _photos(tmp_path: Path) -> dict[str, Rendition]:
    return {
        name: Rendition(name, write_jpeg(tmp_path / f"{name}.jpg", 64, 48), "image/jpeg", 64, 48)
        for name in ("thumb", "preview")
    }


async def _publish(settings: Settings, job: Job) -> Counter[str]:
    """Run publish; the AWS calls it made, by operation."""
    async with open_clients(settings) as aws:
        stage = PublishStage(PublishOptions())
        await stage.start(StageContext(settings, {"aws": aws}, structlog.get_logger()))
        before = metrics.aws_calls()
        await stage.run(job)
        calls = Counter(metrics.aws_calls())
    calls.subtract(before)
    return +calls


def _keys(s3: Any, settings: Settings, media_id: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=settings.renditions_bucket, Prefix=f"{media_id}/")
    return sorted(entry["Key"] for entry in listed.get("Contents", []))


async def test_a_fresh_uploads_renditions_go_up_in_one_put_each_and_nothing_is_listed(
    settings: Settings, s3: Any, dynamodb: Any, tmp_path: Path
) -> None:
    media_id = new_media_id()
    dynamodb.put_item(TableName=settings.table, Item=encode(_item(media_id, sole=True)))
    calls = await _publish(settings, _job(media_id, _photos(tmp_path), tmp_path))
    s3_calls = {name: n for name, n in calls.items() if name.startswith("s3.")}
    assert s3_calls == {"s3.PutObject": 2}
    head = s3.head_object(Bucket=settings.renditions_bucket, Key=f"{media_id}/{TAG}/thumb.jpg")
    assert head["ContentType"] == "image/jpeg"
    assert head["CacheControl"] == PublishOptions().cache_control
    assert head["Metadata"] == {"media-id": media_id, "rendition": "thumb"}
    assert head["ContentLength"] == (tmp_path / "thumb.jpg").stat().st_size


async def test_an_item_that_held_another_object_loses_that_objects_renditions(
    settings: Settings, s3: Any, dynamodb: Any, tmp_path: Path
) -> None:
    media_id = new_media_id()
    dynamodb.put_item(TableName=settings.table, Item=encode(_item(media_id, sole=False)))
    earlier = f"{media_id}/older000000/thumb.jpg"
    s3.put_object(Bucket=settings.renditions_bucket, Key=earlier, Body=b"old")
    calls = await _publish(settings, _job(media_id, _photos(tmp_path), tmp_path))
    assert calls["s3.ListObjectsV2"] == 1
    assert _keys(s3, settings, media_id) == [
        f"{media_id}/{TAG}/preview.jpg",
        f"{media_id}/{TAG}/thumb.jpg",
    ]


async def test_a_rendition_past_the_single_put_size_goes_up_in_parts(
    settings: Settings, s3: Any, dynamodb: Any, tmp_path: Path
) -> None:
    media_id = new_media_id()
    dynamodb.put_item(TableName=settings.table, Item=encode(_item(media_id, sole=True)))
    big = tmp_path / "video.mp4"
    data = os.urandom(SINGLE_PUT_BYTES + 1024)
    big.write_bytes(data)
    rendition = Rendition("video", big, "video/mp4", 64, 48, checked=True)
    calls = await _publish(settings, _job(media_id, {"video": rendition}, tmp_path))
    assert calls["s3.CreateMultipartUpload"] == 1
    assert calls["s3.CompleteMultipartUpload"] == 1
    assert "s3.PutObject" not in calls
    got = s3.get_object(Bucket=settings.renditions_bucket, Key=f"{media_id}/{TAG}/video.mp4")
    assert got["Body"].read() == data
    assert got["ContentType"] == "video/mp4"


async def test_only_a_fresh_uploads_first_claim_marks_its_item_as_holding_one_object(
    settings: Settings, dynamodb: Any
) -> None:
    media_id = new_media_id()
    pending = {
        "media_id": media_id,
        "owner": "alice",
        "status": "PENDING_UPLOAD",
        "created_at": "2024-01-01T00:00:00.000Z",
    }
    dynamodb.put_item(TableName=settings.table, Item=encode(pending))

    def stored(etag: str, sequencer: str) -> StoredObject:
        order = sequencer.ljust(64, "0")
        return StoredObject(etag, 10, None, sequencer, order, f"tag-{etag}")

    async def current_etag() -> str | None:
        return None

    async with open_clients(settings) as aws:
        store = MediaStore(aws.dynamodb, settings.table)
        first = await store.claim(
            media_id,
            stored("a", "01"),
            Lease("token-a", "message-a", 30),
            receive_count=1,
            uploaded_at=None,
            current_etag=current_etag,
        )
        assert first.item is not None
        assert first.item[SOLE_OBJECT] is True
        newer = await store.claim(
            media_id,
            stored("b", "02"),
            Lease("token-b", "message-b", 30),
            receive_count=1,
            uploaded_at=None,
            current_etag=current_etag,
        )
    assert newer.replaced
    assert newer.item is not None
    assert SOLE_OBJECT not in newer.item
