"""Photos through the whole flow on moto: upload, worker, renditions in S3, item, event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pyvips

from mediamill_core.settings import Settings
from mediamill_testkit.client import Uploader, drain_events, raw_item
from stages.photo.stage import ThumbnailStage
from stages.probe.stage import ProbeStage
from worker.consumer import Worker
from worker.dev import broken_samples, samples
from worker.dev.devstack import Stack
from worker.publish import PublishStage
from worker.registry import LoadedStage, StageRegistry, instantiate

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def process(settings: Settings) -> None:
    registry = StageRegistry(
        [
            LoadedStage(stage=instantiate(cls, None, cls.name))
            for cls in (ProbeStage, ThumbnailStage, PublishStage)
        ]
    )
    await Worker(settings, registry, burst=True).run()


def rendition(s3: Any, stack: Stack, key: str) -> tuple[bytes, dict[str, Any]]:
    got = s3.get_object(Bucket=stack.names.renditions_bucket, Key=key)
    return got["Body"].read(), got


async def test_mixed_photos_end_ready_upright_private_and_the_bad_ones_fail(
    settings: Settings,
    stack: Stack,
    tmp_path: Path,
    s3: Any,
    sqs: Any,
    dynamodb: Any,
    media_events: str,
) -> None:
    uploader = Uploader(settings)
    files = {
        "rotated": (
            samples.write_jpeg(
                tmp_path / "rotated.jpg",
                1600,
                1200,
                orientation=6,
                gps=(48.8584, 2.2945),
                camera=True,
            ),
            "image/jpeg",
        ),
        "heic": (samples.write_heic(tmp_path / "phone.heic", 800, 600), "image/heic"),
        "alpha": (samples.write_png(tmp_path / "logo.png", 300, 200, alpha=True), "image/png"),
        "gif": (samples.write_gif(tmp_path / "anim.gif", 200, 150, frames=5), "image/gif"),
        "damaged": (broken_samples.write_damaged_jpeg(tmp_path / "damaged.jpg"), "image/jpeg"),
        "fake": (broken_samples.write_fake_jpeg(tmp_path / "fake.jpg"), "image/jpeg"),
    }
    ids = {name: uploader.upload(path, kind) for name, (path, kind) in files.items()}

    await process(settings)

    views = {name: uploader.get(media_id) for name, media_id in ids.items()}
    items = {
        name: raw_item(dynamodb, stack.names.table, media_id) for name, media_id in ids.items()
    }
    for name in ("rotated", "heic", "alpha", "gif", "damaged"):
        view = views[name]
        assert view["status"] == "READY", (name, view)
        assert set(view["renditions"]) == {"thumb", "preview"}, name
        assert view["metadata"]["placeholder"]["thumbhash"]
    assert views["fake"]["status"] == "FAILED"
    assert "HTML" in views["fake"]["error"]

    # Upright: the portrait photo's preview is portrait, as stored in S3 and described.
    rotated = views["rotated"]
    assert (rotated["metadata"]["width"], rotated["metadata"]["height"]) == (1200, 1600)
    body, got = rendition(s3, stack, items["rotated"]["renditions"]["preview"]["key"])
    assert got["ContentType"] == "image/jpeg"
    preview = pyvips.Image.new_from_buffer(body, "")
    assert (preview.width, preview.height) == (1080, 1440)
    assert preview.get_typeof("exif-data") == 0
    thumb_body, got = rendition(s3, stack, items["rotated"]["renditions"]["thumb"]["key"])
    assert got["ContentType"] == "image/webp"
    assert b"Exif" not in thumb_body
    assert rotated["metadata"]["camera"]["model"] == "iPhone 15 Pro"

    # The position is stored apart, shown to the owner, and never in metadata or events.
    item = items["rotated"]
    assert item["location"]["latitude"] == pytest.approx(48.8584, abs=1e-4)
    assert "location" not in item["metadata"]
    assert rotated["location"]["longitude"] == pytest.approx(2.2945, abs=1e-4)

    # The animated GIF's thumb is an animated WebP.
    gif_body, _ = rendition(s3, stack, items["gif"]["renditions"]["thumb"]["key"])
    assert pyvips.Image.new_from_buffer(gif_body, "", n=-1).get("n-pages") == 5

    # The damaged JPEG is READY with its warning; the rest carry none.
    assert any("damaged" in warning for warning in views["damaged"]["warnings"])
    assert not views["heic"]["warnings"]

    events = {event["media_id"]: event for event in drain_events(sqs, media_events)}
    assert events[ids["rotated"]]["type"] == "media.processed"
    assert events[ids["fake"]]["type"] == "media.failed"
    assert all("location" not in json.dumps(event) for event in events.values())
    assert len(body) == rotated["renditions"]["preview"]["bytes"]


async def test_a_bomb_fails_from_its_header_with_the_limit_in_the_reason(
    settings: Settings, stack: Stack, tmp_path: Path
) -> None:
    uploader = Uploader(settings)
    media_id = uploader.upload(broken_samples.write_png_bomb(tmp_path / "bomb.png", 40_000, 30_000))
    await process(settings)
    view = uploader.get(media_id)
    assert view["status"] == "FAILED"
    assert "1200 megapixels" in view["error"]
    assert view["renditions"] == {} or not view.get("renditions")
