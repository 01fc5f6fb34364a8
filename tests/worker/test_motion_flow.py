"""Motion photos through the real worker on moto: the still's renditions and the clip, READY."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import pytest

from mediamill_core.settings import Settings
from mediamill_testkit.client import Uploader, raw_item
from stages.motion.stage import MotionStage
from stages.photo.stage import ThumbnailStage
from stages.probe.stage import ProbeStage
from stages.video.stage import TranscodeStage
from worker.consumer import Worker
from worker.dev.devstack import Stack
from worker.dev.motion_samples import write_motion_photo
from worker.publish import PublishStage
from worker.registry import LoadedStage, StageRegistry, instantiate

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def process(settings: Settings) -> None:
    stages = [
        LoadedStage(stage=instantiate(cls, None, cls.name))
        for cls in (ProbeStage, ThumbnailStage, TranscodeStage, MotionStage, PublishStage)
    ]
    await Worker(settings, StageRegistry(stages), burst=True).run()


async def test_a_motion_photo_is_ready_with_its_stills_and_its_motion_clip(
    settings: Settings, stack: Stack, s3: Any, dynamodb: Any, tmp_path: Path
) -> None:
    uploader = Uploader(settings)
    sound = uploader.upload(
        write_motion_photo(tmp_path / "PXL_MP.jpg", 320, 240, seconds=1.5), "image/jpeg"
    )
    cut = uploader.upload(
        write_motion_photo(tmp_path / "MVIMG.jpg", form="micro_video", offset=10**8), "image/jpeg"
    )

    await process(settings)

    view = uploader.get(sound)
    assert view["status"] == "READY", view
    assert view["kind"] == "image"
    assert set(view["renditions"]) == {"thumb", "preview", "motion"}
    assert view["metadata"]["motion"]["duration"] == pytest.approx(1.5, abs=0.05)
    item = raw_item(dynamodb, stack.names.table, sound)
    assert item is not None
    assert item["warnings"] == []
    motion = item["renditions"]["motion"]
    assert motion["key"] == f"{sound}/{item['source']['tag']}/motion.mp4"
    assert motion["content_type"] == "video/mp4"
    assert {s["name"]: s["outcome"] for s in item["stages"]}["motion"] == "ok"
    played = tmp_path / "played.mp4"
    played.write_bytes(
        s3.get_object(Bucket=stack.names.renditions_bucket, Key=motion["key"])["Body"].read()
    )
    with av.open(str(played)) as media:
        assert sum(1 for _ in media.decode(video=0)) == 36

    damaged = raw_item(dynamodb, stack.names.table, cut)
    assert damaged is not None
    assert damaged["status"] == "READY"
    assert set(damaged["renditions"]) == {"thumb", "preview"}
    [warning] = damaged["warnings"]
    assert warning.startswith("motion: the motion photo's video was left out: the XMP places it")
    assert {s["name"]: s["outcome"] for s in damaged["stages"]}["motion"] == "warning"
