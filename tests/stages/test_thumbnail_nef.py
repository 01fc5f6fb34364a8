"""A second RAW format end to end: NEF files laid out as Nikon's uncompressed NEF (written by
worker.dev.raw_samples), which LibRaw decodes as the Nikon D700 they name.

Without Nikon's maker notes LibRaw develops them with its own defaults for the model, so the
colours are checked for the dominant channel only; sizes, orientation, the choice between the
preview and the raw data, and the camera facts are checked exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pyvips
import structlog

from mediamill_core.settings import load_settings
from stages import Job, MediaKind, StageContext, StageOptions
from stages.photo.stage import ThumbnailOptions, ThumbnailStage
from stages.probe.stage import ProbeStage
from worker.dev.raw_samples import PREVIEW_MARK, write_nef


async def thumbnail(path: Path, tmp_path: Path) -> tuple[dict[str, Any], Any]:
    probed = ProbeStage(StageOptions()).run_sync(Job.standalone(path, tmp_path))
    stage = ThumbnailStage(ThumbnailOptions())
    await stage.start(
        StageContext(settings=load_settings(), resources={}, log=structlog.get_logger())
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    job = Job.standalone(
        path, workdir, kind=MediaKind.IMAGE, metadata=probed.metadata, options=stage.options
    )
    return probed.metadata, stage.run_sync(job)


def preview_of(result: Any) -> pyvips.Image:
    found = next(r for r in result.renditions if r.name == "preview")
    image: pyvips.Image = pyvips.Image.new_from_file(str(found.path))
    return image


def quadrants(image: pyvips.Image) -> list[list[float]]:
    return [
        list(image.getpoint(int(x * (image.width - 1)), int(y * (image.height - 1))))
        for y in (0.25, 0.75)
        for x in (0.25, 0.75)
    ]


def dominant(colour: list[float]) -> int:
    return colour.index(max(colour))


async def test_a_nef_is_probed_and_developed_from_its_raw_data(tmp_path: Path) -> None:
    probed, result = await thumbnail(write_nef(tmp_path / "DSC_0001.NEF", 2400, 1600), tmp_path)
    assert (probed["format"], probed["mime_type"]) == ("nef", "image/x-nikon-nef")
    # LibRaw's D700 geometry crops two columns of the sensor's margin.
    assert (probed["width"], probed["height"], probed["orientation"]) == (2396, 1600, 1)
    preview = preview_of(result)
    assert (preview.width, preview.height) == (1440, 962)
    top_left, top_right, bottom_left, _ = quadrants(preview)
    assert [dominant(top_left), dominant(top_right), dominant(bottom_left)] == [0, 1, 2]
    assert result.metadata["camera"] == {
        "make": "NIKON CORPORATION",
        "model": "NIKON D700",
        "lens": "AF-S Nikkor 24-70mm f/2.8G",
        "exposure_time": 0.004,
        "f_number": 2.8,
        "iso": 400,
        "focal_length": 35.0,
    }
    assert result.metadata["bit_depth"] == 16


async def test_a_nef_preview_in_its_sub_ifd_makes_the_renditions(tmp_path: Path) -> None:
    path = write_nef(tmp_path / "DSC_0002.NEF", 2400, 1600, preview=1600, mark_preview=True)
    _, result = await thumbnail(path, tmp_path)
    mark = quadrants(preview_of(result))[3]
    assert all(abs(a - b) < 12 for a, b in zip(mark, PREVIEW_MARK, strict=True)), mark


@pytest.mark.parametrize("source", ["preview", "raw"])
async def test_a_nef_turned_by_its_orientation_flag_is_upright(tmp_path: Path, source: str) -> None:
    path = write_nef(
        tmp_path / "DSC_0003.NEF",
        2400,
        1600,
        preview=1600 if source == "preview" else None,
        orientation=8,  # displayed turned a quarter anticlockwise
        mark_preview=True,
    )
    _, result = await thumbnail(path, tmp_path)
    assert result.metadata["height"] > result.metadata["width"]
    preview = preview_of(result)
    assert preview.height == 1440 > preview.width
    # Stored green (top right) shows at the top left, red (top left) at the bottom left.
    top_left, _, bottom_left, _ = quadrants(preview)
    assert (dominant(top_left), dominant(bottom_left)) == (1, 0)
