"""publish against moto with an HLS ladder: its files at their relative paths, each with its
content type and caching, one ``hls`` entry on the item, and no orphan segment left behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import structlog

from mediamill_core.hls import HLS_CONTENT_TYPE
from mediamill_core.items import encode
from mediamill_core.keys import new_media_id
from mediamill_core.settings import Settings
from stages.contract import Job, MediaKind, MediaSource, Rendition, StageContext, StageOptions
from stages.probe.stage import ProbeStage
from stages.video.streaming import HlsOptions, HlsStage
from worker.aws import open_clients
from worker.dev.samples import write_video
from worker.publish import PublishOptions, PublishStage
from worker.store import StaleJob

ETAG = "etag-1"
TAG = "0123456789ab"


@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> Rendition:
    folder = tmp_path_factory.mktemp("ladder")
    source = write_video(folder / "clip.mp4", width=640, height=360, seconds=3.0, fps=24)
    probed = ProbeStage(StageOptions()).run_sync(Job.standalone(source, folder))
    options = HlsOptions(min_duration=2.0, segment_seconds=1.0)
    job = Job.standalone(
        source, folder, kind=MediaKind.VIDEO, metadata=probed.metadata, options=options
    )
    (rendition,) = HlsStage(options).run_sync(job).renditions
    return rendition


def _job(tmp_path: Path, media_id: str, ladder: Rendition) -> Job:
    return Job(
        source=MediaSource(media_id, "alice", "b", f"originals/{media_id}", ETAG, 10, tag=TAG),
        original=tmp_path / "original",
        workdir=tmp_path,
        kind=MediaKind.VIDEO,
        attempt=1,
        max_attempts=3,
        renditions={"hls": ladder},
        metadata={},
        options=PublishOptions(),
        log=structlog.get_logger(),
    )


async def _publish(settings: Settings, job: Job) -> None:
    async with open_clients(settings) as aws:
        stage = PublishStage(PublishOptions())
        await stage.start(StageContext(settings, {"aws": aws}, structlog.get_logger()))
        await stage.run(job)


def _item(media_id: str, status: str) -> dict[str, Any]:
    return {
        "media_id": media_id,
        "owner": "alice",
        "status": status,
        "created_at": "2024-01-01T00:00:00.000Z",
        "source": {"bucket": "b", "key": f"originals/{media_id}", "etag": ETAG, "tag": TAG},
    }


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(entry["Key"] for entry in listed)


async def test_the_ladder_is_stored_at_its_relative_paths_with_types_and_caching(
    settings: Settings, s3: Any, dynamodb: Any, tmp_path: Path, ladder: Rendition
) -> None:
    media_id = new_media_id()
    dynamodb.put_item(TableName=settings.table, Item=encode(_item(media_id, "PROCESSING")))
    await _publish(settings, _job(tmp_path, media_id, ladder))
    root = ladder.path.parent
    prefix = f"{media_id}/{TAG}/hls/"
    local = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert "master.m3u8" in local
    assert "360p/index.m3u8" in local
    assert "360p/init.mp4" in local
    assert _keys(s3, settings.renditions_bucket, prefix) == [f"{prefix}{name}" for name in local]
    for name in local:
        head = s3.head_object(Bucket=settings.renditions_bucket, Key=f"{prefix}{name}")
        if name.endswith(".m3u8"):
            assert head["ContentType"] == "application/vnd.apple.mpegurl"
            assert head["CacheControl"] == "public, max-age=60"
        else:
            assert head["ContentType"] == "video/mp4"
            assert head["CacheControl"] == "public, max-age=31536000, immutable"
        body = s3.get_object(Bucket=settings.renditions_bucket, Key=f"{prefix}{name}")["Body"]
        assert body.read() == (root / name).read_bytes()

    item = dynamodb.get_item(TableName=settings.table, Key={"media_id": {"S": media_id}})["Item"]
    entry = item["renditions"]["M"]["hls"]["M"]
    assert entry["key"]["S"] == f"{prefix}master.m3u8"
    assert entry["prefix"]["S"] == prefix
    assert entry["content_type"]["S"] == HLS_CONTENT_TYPE
    assert int(entry["files"]["N"]) == len(local)
    (variant,) = entry["variants"]["L"]
    assert variant["M"]["playlist"]["S"] == "360p/index.m3u8"
    assert variant["M"]["codecs"]["S"].startswith("avc1.")


async def test_a_ladder_published_for_a_deleted_item_leaves_no_segment(
    settings: Settings, s3: Any, tmp_path: Path, ladder: Rendition
) -> None:
    media_id = new_media_id()
    with pytest.raises(StaleJob):
        await _publish(settings, _job(tmp_path, media_id, ladder))
    assert _keys(s3, settings.renditions_bucket, f"{media_id}/") == []
