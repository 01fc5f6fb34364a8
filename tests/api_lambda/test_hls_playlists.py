"""The API hands out an HLS ladder a player can follow: under the renditions base URL as
stored, or (presigned mode) through the API's own playlists whose segments are presigned."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import anyio
import av
import pytest

from api_lambda.app import MediaApi
from mediamill_core.hls import HLS_CONTENT_TYPE, playlist_uris
from mediamill_core.settings import Settings, load_settings
from mediamill_testkit.client import api_event
from mediamill_testkit.ladders import TAG, make_ladder, published_ladder
from stages.contract import Rendition

HOST = "api.example.test"


@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> Rendition:
    return make_ladder(tmp_path_factory.mktemp("ladder"), width=854, height=480)


@pytest.fixture
def published(settings: Settings, dynamodb: Any, tmp_path: Path, ladder: Rendition) -> str:
    return anyio.run(published_ladder, settings, dynamodb, ladder, tmp_path)


def get(api: MediaApi, url: str, sub: str = "alice") -> dict[str, Any]:
    """GET ``url`` from the API as API Gateway's ``prod`` stage would hand it over."""
    parts = urlsplit(url)
    assert parts.netloc == HOST
    event = api_event("GET", parts.path, sub=sub, stage="prod")
    event["headers"].update({"host": HOST, "x-forwarded-proto": "https"})
    return api(event, None)


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url) as answer:
        return bytes(answer.read())


def test_presigned_mode_serves_playlists_whose_segments_play(
    settings: Settings, published: str, ladder: Rendition, tmp_path: Path
) -> None:
    api = MediaApi.from_settings(settings)
    view = json.loads(get(api, f"https://{HOST}/prod/media/{published}")["body"])
    entry = view["renditions"]["hls"]
    assert entry["content_type"] == HLS_CONTENT_TYPE
    assert [v["name"] for v in entry["variants"]] == ["480p", "360p"]
    master_url = entry["url"]
    assert master_url == f"https://{HOST}/prod/media/{published}/hls/master.m3u8"

    master = get(api, master_url)
    assert master["statusCode"] == 200
    assert master["headers"]["content-type"] == HLS_CONTENT_TYPE
    assert master["headers"]["cache-control"] == "no-store"
    root = ladder.path.parent
    assert master["body"] == (root / "master.m3u8").read_text()
    for uri in playlist_uris(master["body"]):
        variant = get(api, urljoin(master_url, uri))
        assert variant["statusCode"] == 200
        segments = playlist_uris(variant["body"])
        local = playlist_uris((root / uri).read_text())
        assert len(segments) == len(local)
        folder = root / uri.rsplit("/", 1)[0]
        fetched = [fetch(url) for url in segments]
        assert fetched == [(folder / name).read_bytes() for name in local]
        # The init segment and the first media segment make a clip that decodes.
        clip = tmp_path / f"{folder.name}.mp4"
        clip.write_bytes(fetched[0] + fetched[1])
        with av.open(str(clip)) as media:
            assert next(media.decode(video=0)).height == int(folder.name.removesuffix("p"))


def test_playlists_are_the_owners_alone_and_only_those_the_master_lists(
    settings: Settings, published: str
) -> None:
    api = MediaApi.from_settings(settings)
    base = f"https://{HOST}/prod/media/{published}/hls"
    assert get(api, f"{base}/master.m3u8", sub="mallory")["statusCode"] == 404
    assert get(api, f"{base}/480p/index.m3u8", sub="mallory")["statusCode"] == 404
    assert get(api, f"{base}/1080p/index.m3u8")["statusCode"] == 404
    assert get(api, f"{base}/480p/init.mp4")["statusCode"] == 404
    assert get(api, f"{base}/other.m3u8")["statusCode"] == 404


def test_with_a_base_url_the_stored_ladder_is_linked_as_it_is(
    settings: Settings,
    published: str,
    s3: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEDIAMILL_RENDITIONS_BASE_URL", "https://d111.cloudfront.net/")
    api = MediaApi.from_settings(load_settings())
    view = json.loads(get(api, f"https://{HOST}/prod/media/{published}")["body"])
    master_url = view["renditions"]["hls"]["url"]
    assert master_url == f"https://d111.cloudfront.net/{published}/{TAG}/hls/master.m3u8"
    # Every entry resolves, relative to the master, to an object publish stored.
    master_key = urlsplit(master_url).path.lstrip("/")
    master = s3.get_object(Bucket=settings.renditions_bucket, Key=master_key)["Body"].read()
    for uri in playlist_uris(master.decode()):
        key = urlsplit(urljoin(master_url, uri)).path.lstrip("/")
        variant = s3.get_object(Bucket=settings.renditions_bucket, Key=key)["Body"].read()
        for segment in playlist_uris(variant.decode()):
            found = urlsplit(urljoin(urljoin(master_url, uri), segment)).path.lstrip("/")
            s3.head_object(Bucket=settings.renditions_bucket, Key=found)
