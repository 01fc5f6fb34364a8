"""A phone video through the real worker on moto: probe, transcode, publish, READY."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av
import pytest

from mediamill_core.settings import Settings
from mediamill_testkit.client import Uploader, raw_item
from stages.probe.stage import ProbeStage
from stages.video.stage import TranscodeStage
from worker.consumer import Worker
from worker.dev.broken_samples import write_broken_video
from worker.dev.devstack import Stack
from worker.dev.samples import write_video
from worker.publish import PublishStage
from worker.registry import LoadedStage, StageRegistry, instantiate

pytestmark = pytest.mark.anyio
GPS = "+37.3349-122.0090+010.000/"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def process(settings: Settings) -> None:
    stages = [
        LoadedStage(stage=instantiate(cls, None, cls.name))
        for cls in (ProbeStage, TranscodeStage, PublishStage)
    ]
    await Worker(settings, StageRegistry(stages), burst=True).run()


async def test_rotated_phone_clip_becomes_ready_with_video_poster_and_private_location(
    settings: Settings,
    stack: Stack,
    s3: Any,
    sqs: Any,
    dynamodb: Any,
    media_events: str,
    tmp_path: Path,
) -> None:
    clip = write_video(
        tmp_path / "phone.mov", container="mov", rotation=90, seconds=1.0, tags={"location": GPS}
    )
    uploader = Uploader(settings)
    media_id = uploader.upload(clip, "video/quicktime")

    await process(settings)

    view = uploader.get(media_id)
    assert view["status"] == "READY", view
    assert view["kind"] == "video"
    assert (view["metadata"]["width"], view["metadata"]["height"]) == (240, 320)
    assert view["metadata"]["placeholder"]["thumbhash"]
    assert set(view["renditions"]) == {"video", "thumb", "preview", "preview_anim"}
    item = raw_item(dynamodb, stack.names.table, media_id)
    assert item is not None
    video = item["renditions"]["video"]
    tag = item["source"]["tag"]
    assert (video["key"], video["content_type"]) == (f"{media_id}/{tag}/video.mp4", "video/mp4")
    assert (int(video["width"]), int(video["height"])) == (240, 320)
    assert item["renditions"]["thumb"]["key"] == f"{media_id}/{tag}/thumb.webp"
    body = s3.get_object(Bucket=stack.names.renditions_bucket, Key=video["key"])["Body"].read()
    played = tmp_path / "played.mp4"
    played.write_bytes(body)
    with av.open(str(played)) as media:
        frames = list(media.decode(video=0))
    assert (frames[0].width, frames[0].height, frames[0].rotation) == (240, 320, 0)
    assert "location" not in item["metadata"]  # owner-only, in its own attribute
    assert float(item["location"]["latitude"]) == pytest.approx(37.3349)
    got = sqs.receive_message(QueueUrl=media_events, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    events = [json.loads(message["Body"]) for message in got.get("Messages", [])]
    assert [event["type"] for event in events] == ["media.processed"]
    assert "location" not in json.dumps(events)


async def test_cut_recording_ends_failed_with_its_reason(
    settings: Settings, tmp_path: Path
) -> None:
    uploader = Uploader(settings)
    media_id = uploader.upload(write_broken_video(tmp_path / "cut.mp4", "no-moov"), "video/mp4")

    await process(settings)

    view = uploader.get(media_id)
    assert view["status"] == "FAILED"
    assert "without a moov box" in view["error"]
