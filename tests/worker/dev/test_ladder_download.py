"""The demo's ladder download over real HTTP: the local API's presigned playlists followed to
moto's segments, saved so the local master playlist plays offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
import structlog

from api_lambda.app import MediaApi
from mediamill_core.hls import HLS_CONTENT_TYPE, playlist_uris
from mediamill_core.items import encode
from mediamill_core.keys import new_media_id
from mediamill_core.settings import Settings
from stages.contract import Job, MediaKind, MediaSource, Rendition, StageContext, StageOptions
from stages.probe.stage import ProbeStage
from stages.video.streaming import HlsOptions, HlsStage
from worker.aws import open_clients
from worker.dev.demo import DemoClient
from worker.dev.local_api import dev_token, serve_api
from worker.dev.samples import write_video
from worker.publish import PublishOptions, PublishStage

TAG = "0123456789ab"


@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> Rendition:
    folder = tmp_path_factory.mktemp("ladder")
    source = write_video(folder / "clip.mp4", width=640, height=480, seconds=3.0, fps=24)
    probed = ProbeStage(StageOptions()).run_sync(Job.standalone(source, folder))
    options = HlsOptions(min_duration=2.0, segment_seconds=1.0)
    job = Job.standalone(
        source, folder, kind=MediaKind.VIDEO, metadata=probed.metadata, options=options
    )
    (rendition,) = HlsStage(options).run_sync(job).renditions
    return rendition


async def _publish(settings: Settings, dynamodb: Any, tmp_path: Path, ladder: Rendition) -> str:
    media_id = new_media_id()
    source = {"bucket": "b", "key": f"originals/{media_id}", "etag": "e", "tag": TAG}
    item = {"media_id": media_id, "owner": "alice", "status": "PROCESSING", "source": source}
    item["created_at"] = "2024-01-01T00:00:00.000Z"
    dynamodb.put_item(TableName=settings.table, Item=encode(item))
    job = Job(
        source=MediaSource(media_id, "alice", "b", source["key"], "e", 10, tag=TAG),
        original=tmp_path / "original",
        workdir=tmp_path,
        kind=MediaKind.VIDEO,
        attempt=1,
        max_attempts=1,
        renditions={"hls": ladder},
        metadata={},
        options=PublishOptions(),
        log=structlog.get_logger(),
    )
    async with open_clients(settings) as aws:
        stage = PublishStage(PublishOptions())
        await stage.start(StageContext(settings, {"aws": aws}, structlog.get_logger()))
        await stage.run(job)
    return media_id


async def test_the_downloaded_ladder_plays_from_its_local_master(
    settings: Settings, dynamodb: Any, tmp_path: Path, ladder: Rendition
) -> None:
    media_id = await _publish(settings, dynamodb, tmp_path, ladder)
    runner, api_url = await serve_api(MediaApi.from_settings(settings))
    try:
        async with aiohttp.ClientSession() as http:
            client = DemoClient(http, api_url, dev_token("alice"))
            view = await client.media(media_id)
            entry = view["renditions"]["hls"]
            assert entry["content_type"] == HLS_CONTENT_TYPE
            assert entry["url"].startswith(f"{api_url}/media/{media_id}/hls/")
            saved = await client.download_ladder(entry["url"], tmp_path / "out" / "hls")
    finally:
        await runner.cleanup()

    out = tmp_path / "out" / "hls"
    root = ladder.path.parent
    local = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert local == sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert saved == sum((out / name).stat().st_size for name in local)
    for name in local:  # the files as stored, the playlists naming them relatively
        assert (out / name).read_bytes() == (root / name).read_bytes(), name
    with av.open(str(ladder.path.parent.parent / "clip.mp4")) as media:
        expected = sum(1 for _ in media.decode(video=0))
    for uri in playlist_uris((out / "master.m3u8").read_text()):
        with av.open(str(out / uri)) as media:
            assert sum(1 for _ in media.decode(video=0)) == expected
    assert json.dumps(view)  # the view stays plain JSON with its variants
