"""publish against moto: READY when the item is ours; no orphans when it was deleted meanwhile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import structlog

from mediamill_core.items import encode
from mediamill_core.keys import new_media_id
from mediamill_core.settings import Settings
from stages.contract import Job, MediaKind, MediaSource, Rendition, RenditionInvalid, StageContext
from worker.aws import open_clients
from worker.dev.samples import write_jpeg
from worker.publish import PublishOptions, PublishStage
from worker.store import StaleJob

ETAG = "etag-1"
TAG = "0123456789ab"


def _item(media_id: str, status: str) -> dict[str, Any]:
    return {
        "media_id": media_id,
        "owner": "alice",
        "status": status,
        "created_at": "2024-01-01T00:00:00.000Z",
        "source": {"bucket": "b", "key": f"originals/{media_id}", "etag": ETAG, "tag": TAG},
    }


def _job(tmp_path: Path, media_id: str, *, cut: str | None = None) -> Job:
    renditions = {}
    for name in ("thumb", "preview"):
        path = write_jpeg(tmp_path / f"{name}.jpg", 64, 48)
        if name == cut:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        renditions[name] = Rendition(name, path, "image/jpeg", 64, 48)
    return Job(
        source=MediaSource(media_id, "alice", "b", f"originals/{media_id}", ETAG, 10, tag=TAG),
        original=tmp_path / "original",
        workdir=tmp_path,
        kind=MediaKind.IMAGE,
        attempt=1,
        max_attempts=3,
        renditions=renditions,
        metadata={},
        options=PublishOptions(),
        log=structlog.get_logger(),
    )


async def _publish(settings: Settings, job: Job) -> None:
    async with open_clients(settings) as aws:
        stage = PublishStage(PublishOptions())
        await stage.start(StageContext(settings, {"aws": aws}, structlog.get_logger()))
        await stage.run(job)


def _rendition_keys(s3: Any, settings: Settings) -> list[str]:
    listed = s3.list_objects_v2(Bucket=settings.renditions_bucket).get("Contents", [])
    return sorted(entry["Key"] for entry in listed)


async def test_publishes_renditions_and_marks_ready(
    settings: Settings, s3: Any, dynamodb: Any, tmp_path: Path
) -> None:
    media_id = new_media_id()
    dynamodb.put_item(TableName=settings.table, Item=encode(_item(media_id, "PROCESSING")))
    await _publish(settings, _job(tmp_path, media_id))
    assert _rendition_keys(s3, settings) == [
        f"{media_id}/{TAG}/preview.jpg",
        f"{media_id}/{TAG}/thumb.jpg",
    ]


@pytest.mark.parametrize("left", ["deleted", "DELETING"])
async def test_a_deleted_item_keeps_no_renditions(
    settings: Settings, s3: Any, dynamodb: Any, tmp_path: Path, left: str
) -> None:
    media_id = new_media_id()
    if left == "DELETING":
        dynamodb.put_item(TableName=settings.table, Item=encode(_item(media_id, "DELETING")))
    with pytest.raises(StaleJob):
        await _publish(settings, _job(tmp_path, media_id))
    assert _rendition_keys(s3, settings) == []


async def test_renditions_of_an_item_another_delivery_finished_stay(
    settings: Settings, s3: Any, dynamodb: Any, tmp_path: Path
) -> None:
    # Same object, same outcome: the READY write met an equal one (another delivery's, or our
    # own whose answer was lost). That is a success, and the shared keys must stay.
    media_id = new_media_id()
    dynamodb.put_item(TableName=settings.table, Item=encode(_item(media_id, "READY")))
    await _publish(settings, _job(tmp_path, media_id))
    assert len(_rendition_keys(s3, settings)) == 2


async def test_renditions_of_an_outdated_object_are_removed(
    settings: Settings, s3: Any, dynamodb: Any, tmp_path: Path
) -> None:
    # The item was given to a newer object while this job ran: its renditions belong to nobody.
    media_id = new_media_id()
    item = _item(media_id, "PROCESSING")
    item["source"]["tag"] = "newer0000000"
    dynamodb.put_item(TableName=settings.table, Item=encode(item))
    with pytest.raises(StaleJob):
        await _publish(settings, _job(tmp_path, media_id))
    assert _rendition_keys(s3, settings) == []


async def test_a_rendition_that_fails_its_check_is_never_published(
    settings: Settings, s3: Any, dynamodb: Any, tmp_path: Path
) -> None:
    # A plugin's truncated file: publish checks what no stage checked before it.
    media_id = new_media_id()
    dynamodb.put_item(TableName=settings.table, Item=encode(_item(media_id, "PROCESSING")))
    with pytest.raises(RenditionInvalid):
        await _publish(settings, _job(tmp_path, media_id, cut="preview"))
    assert f"{media_id}/{TAG}/preview.jpg" not in _rendition_keys(s3, settings)
    item = dynamodb.get_item(TableName=settings.table, Key={"media_id": {"S": media_id}})["Item"]
    assert item["status"]["S"] == "PROCESSING"
