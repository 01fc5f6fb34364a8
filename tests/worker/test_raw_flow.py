"""A camera RAW upload through the whole flow on moto: API, worker, renditions in S3, item."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pyvips

from mediamill_core.settings import Settings
from mediamill_testkit.client import Uploader, raw_item
from stages.photo.stage import ThumbnailStage
from stages.probe.stage import ProbeStage
from worker.consumer import Worker
from worker.dev.devstack import Stack
from worker.dev.raw_samples import PREVIEW_MARK, write_dng
from worker.publish import PublishStage
from worker.registry import LoadedStage, StageRegistry, instantiate

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_dng_ends_ready_upright_from_its_preview_and_a_cut_one_fails(
    settings: Settings, stack: Stack, tmp_path: Path, s3: Any, dynamodb: Any
) -> None:
    uploader = Uploader(settings)
    photo = write_dng(
        tmp_path / "IMG_0001.DNG", 2400, 1600, preview=1600, orientation=6, mark_preview=True
    )
    whole = write_dng(tmp_path / "whole.dng", 600, 400).read_bytes()
    cut = tmp_path / "cut.dng"
    cut.write_bytes(whole[: len(whole) // 3])
    # A browser declares a type it does not know as application/octet-stream: the name says RAW.
    good = uploader.upload(photo, "application/octet-stream")
    bad = uploader.upload(cut, "image/x-adobe-dng")

    registry = StageRegistry(
        [
            LoadedStage(stage=instantiate(cls, None, cls.name))
            for cls in (ProbeStage, ThumbnailStage, PublishStage)
        ]
    )
    await Worker(settings, registry, burst=True).run()

    view = uploader.get(good)
    assert view["status"] == "READY", view
    metadata = view["metadata"]
    assert (metadata["format"], metadata["mime_type"]) == ("dng", "image/x-adobe-dng")
    assert (metadata["width"], metadata["height"], metadata["bit_depth"]) == (1600, 2400, 12)
    assert metadata["camera"]["model"] == "TestCam 1"
    assert metadata["camera"]["lens"] == "Mediamill 35mm F1.4"
    item = raw_item(dynamodb, stack.names.table, good)
    assert item is not None
    assert item["content_type"] == "image/x-adobe-dng"
    got = s3.get_object(
        Bucket=stack.names.renditions_bucket, Key=item["renditions"]["preview"]["key"]
    )
    assert got["ContentType"] == "image/jpeg"
    preview = pyvips.Image.new_from_buffer(got["Body"].read(), "")
    assert (preview.width, preview.height) == (960, 1440)  # upright: portrait
    # Turned a quarter clockwise, the stored bottom-right quadrant (the preview's mark) shows
    # at the bottom left.
    mark = preview.getpoint(preview.width // 4, preview.height * 3 // 4)
    assert all(abs(a - b) < 12 for a, b in zip(mark, PREVIEW_MARK, strict=True)), mark

    failed = uploader.get(bad)
    assert failed["status"] == "FAILED"
    assert failed["error"] == "truncated DNG: the file ends before its data does"
