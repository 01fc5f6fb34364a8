"""The thumbnail stage on DNG files LibRaw decodes for real: the embedded preview when it is
large enough, a demosaic otherwise, the RAW's orientation flag, camera facts and the limits.

The samples' preview shows a yellow mark where the raw data has grey (bottom right, as
stored), so the renditions say which of the two they were made from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pyvips
import structlog

from mediamill_core.settings import load_settings
from stages import BadMediaError, Job, MediaKind, StageContext, StageOptions
from stages.photo.raw import check_sensor
from stages.photo.stage import ThumbnailOptions, ThumbnailStage
from stages.probe.raw import RawFacts
from stages.probe.stage import ProbeStage
from worker.dev.raw_samples import PREVIEW_MARK, QUADRANTS, write_dng

RED, GREEN, BLUE, GREY = QUADRANTS


async def thumbnail(path: Path, tmp_path: Path, **settings: Any) -> Any:
    probed = ProbeStage(StageOptions()).run_sync(Job.standalone(path, tmp_path))
    stage = ThumbnailStage(ThumbnailOptions())
    context = StageContext(
        settings=load_settings(**settings), resources={}, log=structlog.get_logger()
    )
    await stage.start(context)
    workdir = tmp_path / f"work-{path.stem}"
    workdir.mkdir()
    job = Job.standalone(
        path, workdir, kind=MediaKind.IMAGE, metadata=probed.metadata, options=stage.options
    )
    result = stage.run_sync(job)
    json.dumps(result.metadata)  # stored with the item: plain JSON only
    return result


def rendition(result: Any, name: str) -> pyvips.Image:
    found = next(r for r in result.renditions if r.name == name)
    image: pyvips.Image = pyvips.Image.new_from_file(str(found.path))
    assert (image.width, image.height) == (found.width, found.height)
    return image


def colour_at(image: pyvips.Image, x: float, y: float) -> tuple[float, ...]:
    return tuple(image.getpoint(int(x * (image.width - 1)), int(y * (image.height - 1))))


def near(got: tuple[float, ...], want: tuple[int, ...], tolerance: float) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(got, want, strict=True))


def quadrants(image: pyvips.Image) -> list[tuple[float, ...]]:
    """Top left, top right, bottom left, bottom right, at the quadrants' centres."""
    return [colour_at(image, x, y) for y in (0.25, 0.75) for x in (0.25, 0.75)]


async def test_a_large_embedded_preview_makes_the_renditions(tmp_path: Path) -> None:
    path = write_dng(tmp_path / "big.dng", 3000, 2000, preview=1600, mark_preview=True)
    result = await thumbnail(path, tmp_path)
    preview, thumb = rendition(result, "preview"), rendition(result, "thumb")
    assert (preview.width, preview.height, thumb.width, thumb.height) == (1440, 960, 320, 213)
    for image in (preview, thumb):
        got = quadrants(image)
        assert near(got[3], PREVIEW_MARK, 12), got  # the preview's mark: no demosaic
        for colour, want in zip(got[:3], (RED, GREEN, BLUE), strict=True):
            assert near(colour, want, 12), got
    assert result.warnings == []


async def test_a_preview_smaller_than_the_largest_box_gives_way_to_a_demosaic(
    tmp_path: Path,
) -> None:
    path = write_dng(tmp_path / "small.dng", 3000, 2000, preview=400, mark_preview=True)
    result = await thumbnail(path, tmp_path)
    preview = rendition(result, "preview")
    assert (preview.width, preview.height) == (1440, 960)
    got = quadrants(preview)
    # Developed from the sensor data: grey where the preview has its mark, and the scene's
    # colours as LibRaw renders them (camera white balance, sRGB, auto brightness).
    assert near(got[3], GREY, 16), got
    assert got[0][0] > 200 > 60 > max(got[0][1:]), got
    assert got[1][1] > 170 > 60 > max(got[1][0], got[1][2]), got
    assert got[2][2] > 190 > 70 > max(got[2][:2]), got


async def test_without_a_preview_the_raw_data_is_demosaiced_and_never_upscaled(
    tmp_path: Path,
) -> None:
    result = await thumbnail(write_dng(tmp_path / "plain.dng", 600, 400), tmp_path)
    preview = rendition(result, "preview")
    assert (preview.width, preview.height) == (600, 400)
    assert near(quadrants(preview)[3], GREY, 16)
    assert result.metadata["placeholder"]["thumbhash"]


async def test_a_preview_as_large_as_a_small_raw_is_enough(tmp_path: Path) -> None:
    path = write_dng(tmp_path / "small-sensor.dng", 600, 400, preview=600, mark_preview=True)
    preview = rendition(await thumbnail(path, tmp_path), "preview")
    assert (preview.width, preview.height) == (600, 400)
    assert near(quadrants(preview)[3], PREVIEW_MARK, 12)


async def test_a_preview_of_another_shape_is_not_used(tmp_path: Path) -> None:
    # Letterboxed to 16:9 where the sensor is 3:2: the renditions come from the raw data.
    path = write_dng(tmp_path / "wide.dng", 3000, 2000, preview=(1920, 1080), mark_preview=True)
    preview = rendition(await thumbnail(path, tmp_path), "preview")
    assert (preview.width, preview.height) == (1440, 960)
    assert near(quadrants(preview)[3], GREY, 16)


async def test_a_damaged_preview_gives_way_to_a_demosaic(tmp_path: Path) -> None:
    path = write_dng(tmp_path / "bad-preview.dng", 3000, 2000, preview=1600, mark_preview=True)
    data = bytearray(path.read_bytes())
    jpeg = data.rindex(b"\xff\xd8\xff")  # the preview is the file's last part
    data[jpeg + 700 :] = bytes(len(data) - jpeg - 700)  # everything after its headers zeroed
    path.write_bytes(bytes(data))
    result = await thumbnail(path, tmp_path)
    assert near(quadrants(rendition(result, "preview"))[3], GREY, 16)
    assert result.warnings == []


# Where each stored quadrant shows once the flag is applied: EXIF orientation -> the stored
# quadrant (0 top left, 1 top right, 2 bottom left, 3 bottom right) displayed at each place.
TURNED = {3: (3, 2, 1, 0), 6: (2, 0, 3, 1), 8: (1, 3, 0, 2)}


@pytest.mark.parametrize("orientation", sorted(TURNED))
@pytest.mark.parametrize("source", ["preview", "demosaic"])
async def test_the_raw_orientation_flag_turns_the_renditions_upright(
    tmp_path: Path, orientation: int, source: str
) -> None:
    preview = 1600 if source == "preview" else None
    path = write_dng(
        tmp_path / "turned.dng",
        2400,
        1600,
        preview=preview,
        orientation=orientation,
        mark_preview=True,
    )
    result = await thumbnail(path, tmp_path)
    quarter = orientation in (6, 8)
    displayed = (1600, 2400) if quarter else (2400, 1600)
    assert (result.metadata["width"], result.metadata["height"]) == displayed
    image = rendition(result, "preview")
    assert (image.width, image.height) == ((960, 1440) if quarter else (1440, 960))
    stored = [RED, GREEN, BLUE, PREVIEW_MARK if source == "preview" else GREY]
    got = quadrants(image)
    for place, quadrant in enumerate(TURNED[orientation]):
        assert near(got[place], stored[quadrant], 70), (place, got)
        # Nearest to the colour it should be, of the four.
        distances = [sum(abs(a - b) for a, b in zip(got[place], c, strict=True)) for c in stored]
        assert distances.index(min(distances)) == quadrant, (place, got)


async def test_camera_and_lens_facts_are_read_as_for_a_jpeg(tmp_path: Path) -> None:
    path = write_dng(tmp_path / "facts.dng", 600, 400, make="Pentax", model="K-1 II")
    metadata = (await thumbnail(path, tmp_path)).metadata
    assert metadata["camera"] == {
        "make": "Pentax",
        "model": "K-1 II",
        "lens": "Mediamill 35mm F1.4",
        "exposure_time": 0.004,
        "f_number": 2.8,
        "iso": 400,
        "focal_length": 35.0,
    }
    assert metadata["taken_at"] == "2024-07-14T18:03:11"
    assert (metadata["colour_space"], metadata["bit_depth"], metadata["has_alpha"]) == (
        "srgb",
        12,
        False,
    )


async def test_the_gps_position_goes_to_location_as_for_a_jpeg(tmp_path: Path) -> None:
    path = write_dng(tmp_path / "gps.dng", 600, 400, gps=(48.8584, -2.2945))
    metadata = (await thumbnail(path, tmp_path)).metadata
    assert metadata["location"] == {
        "latitude": pytest.approx(48.8584, abs=1e-6),
        "longitude": pytest.approx(-2.2945, abs=1e-6),
    }


async def test_exposure_facts_libraw_read_outside_the_exif_ifd_fill_the_gaps(
    tmp_path: Path,
) -> None:
    # TIFF/EP-style: exposure in IFD 0, where the EXIF reader does not look and LibRaw does
    # (LibRaw takes the ISO from the EXIF IFD only).
    path = write_dng(tmp_path / "tiffep.dng", 600, 400, exposure_in_ifd0=True, lens=None)
    camera = (await thumbnail(path, tmp_path)).metadata["camera"]
    assert camera == {
        "make": "Mediamill",
        "model": "TestCam 1",
        "exposure_time": 0.004,
        "f_number": 2.8,
        "focal_length": 35.0,
    }


async def test_a_raw_over_the_pixel_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    path = write_dng(tmp_path / "bomb.dng", 3000, 2000, preview=1600)
    with pytest.raises(BadMediaError) as caught:
        await thumbnail(path, tmp_path, max_pixels=5_000_000)
    assert str(caught.value) == (
        "the DNG is 3000 x 2000 pixels (6 megapixels), over the limit of 5 megapixels"
    )
    assert not any((tmp_path / "work-bomb").iterdir())


def test_the_sensor_area_counts_against_the_limit_margins_included() -> None:
    facts = RawFacts(
        width=2000, height=1000, raw_width=2100, raw_height=1050, orientation=1, bit_depth=14
    )
    check_sensor(facts, "NEF", 2_205_000)
    with pytest.raises(BadMediaError) as caught:
        check_sensor(facts, "NEF", 2_204_999)
    assert str(caught.value) == (
        "the NEF's raw data is 2100 x 1050 pixels (2 megapixels), over the limit of "
        "2.205 megapixels"
    )


async def test_a_preview_over_the_pixel_limit_is_not_decoded(tmp_path: Path) -> None:
    # The raw data (1.5 MP) is within the limit, its oversized preview (6 MP) is not.
    path = write_dng(tmp_path / "odd.dng", 1500, 1000, preview=3000, mark_preview=True)
    result = await thumbnail(path, tmp_path, max_pixels=2_000_000)
    assert near(quadrants(rendition(result, "preview"))[3], GREY, 16)
