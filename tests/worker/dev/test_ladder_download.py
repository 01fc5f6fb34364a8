"""The demo's ladder download over real HTTP: the local API's presigned playlists followed to
moto's segments, saved so the local master playlist plays offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from api_lambda.app import MediaApi
from mediamill_core.hls import HLS_CONTENT_TYPE, playlist_uris
from mediamill_core.settings import Settings
from mediamill_testkit.ladders import make_ladder, published_ladder
from stages.contract import Rendition
from worker.dev.demo import DemoClient
from worker.dev.local_api import dev_token, serve_api


@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> Rendition:
    return make_ladder(tmp_path_factory.mktemp("ladder"), width=640, height=480)


async def test_the_downloaded_ladder_plays_from_its_local_master(
    settings: Settings, dynamodb: Any, tmp_path: Path, ladder: Rendition
) -> None:
    media_id = await published_ladder(settings, dynamodb, ladder, tmp_path)
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
