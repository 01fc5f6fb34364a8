"""publish against moto with an HLS ladder: its files at their relative paths, each with its
content type and caching, one ``hls`` entry on the item, and no orphan segment left behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mediamill_core.hls import HLS_CONTENT_TYPE
from mediamill_core.keys import new_media_id
from mediamill_core.settings import Settings
from mediamill_testkit.ladders import TAG, make_ladder, processing_item, publish, publish_job
from stages.contract import Rendition
from worker.store import StaleJob


@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> Rendition:
    return make_ladder(tmp_path_factory.mktemp("ladder"), width=640, height=360)


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(entry["Key"] for entry in listed)


async def test_the_ladder_is_stored_at_its_relative_paths_with_types_and_caching(
    settings: Settings, s3: Any, dynamodb: Any, tmp_path: Path, ladder: Rendition
) -> None:
    media_id = new_media_id()
    dynamodb.put_item(TableName=settings.table, Item=processing_item(media_id))
    await publish(settings, publish_job(media_id, ladder, tmp_path))
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
        await publish(settings, publish_job(media_id, ladder, tmp_path))
    assert _keys(s3, settings.renditions_bucket, f"{media_id}/") == []
