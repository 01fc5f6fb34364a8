"""The thumbnail stage on real encoded photos: every format, orientation, colour, alpha, privacy,
animation, damage and bombs. Pixels are checked, not only dimensions."""

from __future__ import annotations

import base64
import json
import struct
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pyvips
import structlog
import thumbhash
from PIL import Image, ImageOps, TiffImagePlugin
from pydantic import ValidationError

from mediamill_core.settings import load_settings
from stages import BadMediaError, Job, MediaKind, StageContext, StageOptions
from stages.photo.placeholder import rgba_to_thumbhash
from stages.photo.render import RenditionSpec
from stages.photo.stage import ThumbnailOptions, ThumbnailStage
from stages.probe.stage import ProbeStage
from worker.dev import broken_samples, samples

RED, GREEN, BLUE, GREY = (230, 20, 20), (20, 200, 40), (30, 40, 220), (128, 128, 128)


async def make_stage(options: ThumbnailOptions | None = None, **settings: Any) -> ThumbnailStage:
    stage = ThumbnailStage(options or ThumbnailOptions())
    context = StageContext(
        settings=load_settings(**settings), resources={}, log=structlog.get_logger()
    )
    await stage.start(context)
    return stage


class Thumbnailed:
    """The stage's result, with its renditions opened for inspection."""

    def __init__(self, result: Any) -> None:
        self.metadata: dict[str, Any] = result.metadata
        self.warnings: list[str] = result.warnings
        self.renditions = {r.name: r for r in result.renditions}

    def image(self, name: str, **options: Any) -> pyvips.Image:
        image: pyvips.Image = pyvips.Image.new_from_file(str(self.renditions[name].path), **options)
        return image

    def pixel(self, name: str, x: float, y: float) -> list[float]:
        """The pixel at fractions (x, y) of the rendition's width and height."""
        image = self.image(name)
        return list(image.getpoint(int(x * (image.width - 1)), int(y * (image.height - 1))))


async def thumbnail(
    path: Path, tmp_path: Path, options: ThumbnailOptions | None = None, **settings: Any
) -> Thumbnailed:
    probed = ProbeStage(StageOptions()).run_sync(Job.standalone(path, tmp_path))
    assert probed.kind is MediaKind.IMAGE
    stage = await make_stage(options, **settings)
    workdir = tmp_path / f"work-{path.stem}"
    workdir.mkdir(exist_ok=True)
    job = Job.standalone(
        path, workdir, kind=MediaKind.IMAGE, metadata=probed.metadata, options=stage.options
    )
    result = stage.run_sync(job)
    json.dumps(result.metadata)  # stored with the item: plain JSON only
    return Thumbnailed(result)


async def refused(path: Path, tmp_path: Path, **settings: Any) -> str:
    with pytest.raises(BadMediaError) as caught:
        await thumbnail(path, tmp_path, **settings)
    return str(caught.value)


def close(actual: list[float], expected: tuple[int, ...], tolerance: float = 24) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=False))


# --- contract ------------------------------------------------------------------------------


def test_declares_the_contract_and_is_registered_like_a_plugin() -> None:
    assert ThumbnailStage.name == "thumbnail"
    assert ThumbnailStage.kinds == frozenset({MediaKind.IMAGE})
    assert ThumbnailStage.requires == ("probe",)
    assert ThumbnailStage.cpu_bound
    assert not ThumbnailStage.optional
    found = {ep.name: ep for ep in entry_points(group="mediamill.stages")}
    assert found["thumbnail"].load() is ThumbnailStage


def test_options_refuse_duplicate_names_and_unknown_formats() -> None:
    with pytest.raises(ValidationError, match="unique"):
        ThumbnailOptions.model_validate(
            {
                "renditions": [
                    {"name": "thumb", "size": 320, "format": "webp"},
                    {"name": "thumb", "size": 640, "format": "jpeg"},
                ]
            }
        )
    with pytest.raises(ValidationError):
        ThumbnailOptions.model_validate(
            {"renditions": [{"name": "thumb", "size": 320, "format": "bmp"}]}
        )
    with pytest.raises(ValidationError):
        ThumbnailOptions.model_validate({"renditions": []})


# --- every input format ----------------------------------------------------------------------

WRITERS: dict[str, Callable[[Path], Path]] = {
    "jpeg-baseline": lambda d: samples.write_jpeg(d / "a.jpg", 2000, 1500),
    "jpeg-progressive": lambda d: samples.write_jpeg(d / "a.jpg", 2000, 1500, progressive=True),
    "jpeg-cmyk": lambda d: samples.write_jpeg(d / "a.jpg", 2000, 1500, cmyk=True),
    "png-alpha": lambda d: samples.write_png(d / "a.png", 1800, 1200, alpha=True),
    "png-16-bit": lambda d: samples.write_png(d / "a.png", 800, 600, bits16=True),
    "png-palette": lambda d: samples.write_png(d / "a.png", 800, 600, palette=True),
    "webp": lambda d: samples.write_webp(d / "a.webp", 800, 600),
    "webp-animated": lambda d: samples.write_webp(d / "a.webp", 400, 300, frames=5),
    "gif-animated": lambda d: samples.write_gif(d / "a.gif", 400, 300, frames=6),
    "heic": lambda d: samples.write_heic(d / "a.heic", 1600, 1200),
    "avif": lambda d: samples.write_avif(d / "a.avif", 1600, 1200),
    "tiff": lambda d: samples.write_tiff(d / "a.tif", 1600, 1200),
}


@pytest.mark.parametrize("kind", sorted(WRITERS))
async def test_every_input_format_gets_web_renditions(kind: str, tmp_path: Path) -> None:
    source = WRITERS[kind](tmp_path)
    original = pyvips.Image.new_from_file(str(source))
    width, height = original.width, original.height
    out = await thumbnail(source, tmp_path)

    thumb, preview = out.image("thumb"), out.image("preview")
    assert out.renditions["thumb"].content_type == "image/webp"
    assert out.image("thumb").get("vips-loader") == "webpload"
    assert out.renditions["preview"].content_type == "image/jpeg"
    assert preview.get("vips-loader") == "jpegload"
    # Fit the box, keep the aspect ratio, never upscale.
    assert max(thumb.width, thumb.height) == min(320, max(width, height))
    assert max(preview.width, preview.height) == min(1440, max(width, height))
    assert abs(preview.width / preview.height - width / height) < 0.01
    assert (out.renditions["preview"].width, out.renditions["preview"].height) == (
        preview.width,
        preview.height,
    )
    # 8-bit sRGB out of everything (16-bit, palette, CMYK, grey in).
    assert preview.bands == 3
    assert preview.format == "uchar"
    assert preview.interpretation == "srgb"
    # Real picture content made it through (not a flat or black frame).
    assert preview.deviate() > 10
    assert out.metadata["width"] == width
    assert out.metadata["height"] == height
    placeholder = base64.b64decode(out.metadata["placeholder"]["thumbhash"])
    assert 5 <= len(placeholder) <= 40
    assert out.warnings == []


async def test_small_photos_are_never_upscaled(tmp_path: Path) -> None:
    out = await thumbnail(samples.write_jpeg(tmp_path / "s.jpg", 200, 100), tmp_path)
    assert (out.image("thumb").width, out.image("thumb").height) == (200, 100)
    assert (out.image("preview").width, out.image("preview").height) == (200, 100)


async def test_renditions_are_configurable_and_avif_is_an_opt_in_format(tmp_path: Path) -> None:
    options = ThumbnailOptions(
        renditions=(
            RenditionSpec(name="small", size=200, format="avif", quality=50),
            RenditionSpec(name="large", size=1000, format="webp", quality=70),
        ),
        placeholder=False,
    )
    out = await thumbnail(samples.write_jpeg(tmp_path / "a.jpg", 2000, 1000), tmp_path, options)
    assert set(out.renditions) == {"small", "large"}
    assert out.renditions["small"].content_type == "image/avif"
    small = out.image("small")
    assert (small.width, small.height) == (200, 100)
    assert small.get("vips-loader") == "heifload"
    assert (out.image("large").width, out.image("large").height) == (1000, 500)
    assert "placeholder" not in out.metadata


# --- orientation ---------------------------------------------------------------------------

# The transpose that undoes each EXIF orientation (PIL's exif_transpose applies the forward one).
_STORE_AS = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def upright_card(width: int = 600, height: int = 400) -> Image.Image:
    """Grey, with a red top-left corner, a green top-right and a blue bottom-left one."""
    card = Image.new("RGB", (width, height), GREY)
    block = (width // 5, height // 5)
    card.paste(RED, (0, 0, *block))
    card.paste(GREEN, (width - block[0], 0, width, block[1]))
    card.paste(BLUE, (0, height - block[1], block[0], height))
    return card


@pytest.mark.parametrize("orientation", range(1, 9))
async def test_exif_orientation_is_applied_to_the_pixels(orientation: int, tmp_path: Path) -> None:
    upright = upright_card()
    transpose = _STORE_AS[orientation]
    stored = upright.transpose(transpose) if transpose is not None else upright
    path = samples.write_jpeg(tmp_path / "o.jpg", orientation=orientation, image=stored)
    # The fixture itself is right: PIL's own transpose brings the stored pixels upright.
    assert ImageOps.exif_transpose(Image.open(path)).size == upright.size

    out = await thumbnail(path, tmp_path)
    assert (out.metadata["width"], out.metadata["height"]) == upright.size
    for name in ("thumb", "preview"):
        image = out.image(name)
        assert (image.width, image.height) == ((320, 213) if name == "thumb" else upright.size)
        assert close(out.pixel(name, 0.02, 0.02), RED), (name, out.pixel(name, 0.02, 0.02))
        assert close(out.pixel(name, 0.98, 0.02), GREEN)
        assert close(out.pixel(name, 0.02, 0.98), BLUE)
        assert close(out.pixel(name, 0.98, 0.98), GREY)
        # Upright pixels and no tag left that would turn them again.
        assert image.get_typeof("orientation") == 0 or image.get("orientation") == 1


# --- colour --------------------------------------------------------------------------------


def flat(colour: tuple[int, int, int], width: int = 400, height: int = 300) -> pyvips.Image:
    image = (pyvips.Image.black(width, height, bands=3) + list(colour)).cast("uchar")
    return image.copy(interpretation="srgb")


async def test_display_p3_is_converted_to_srgb(tmp_path: Path) -> None:
    srgb = (200, 100, 50)
    p3 = flat(srgb).icc_transform("p3", input_profile="srgb", intent="relative")
    stored = [round(v) for v in p3.getpoint(10, 10)]
    assert not close(stored, srgb, tolerance=6)  # P3 numbers differ: the test means something
    path = tmp_path / "p3.jpg"
    p3.jpegsave(str(path), Q=98)
    out = await thumbnail(path, tmp_path)
    assert close(out.pixel("preview", 0.5, 0.5), srgb, tolerance=4)
    assert close(out.pixel("thumb", 0.5, 0.5), srgb, tolerance=5)
    assert "P3" in out.metadata["icc_profile"]
    for name in ("thumb", "preview"):
        assert out.image(name).get_typeof("icc-profile-data") == 0


async def test_no_profile_means_srgb_untouched(tmp_path: Path) -> None:
    path = tmp_path / "plain.jpg"
    flat((200, 100, 50)).jpegsave(str(path), Q=98, keep="none")
    out = await thumbnail(path, tmp_path)
    assert close(out.pixel("preview", 0.5, 0.5), (200, 100, 50), tolerance=3)
    assert "icc_profile" not in out.metadata
    assert out.metadata["colour_space"] == "srgb"


async def test_cmyk_jpeg_comes_out_in_natural_colours(tmp_path: Path) -> None:
    # Pillow writes the yellow circle of the test card as CMYK; an inverted or raw-channel
    # conversion (the classic CMYK bug) would turn it blue or black.
    rgb = samples.write_jpeg(tmp_path / "rgb.jpg", 600, 400)
    cmyk = samples.write_jpeg(tmp_path / "cmyk.jpg", 600, 400, cmyk=True)
    expected = Image.open(rgb).getpixel((200, 200))
    out = await thumbnail(cmyk, tmp_path)
    assert out.metadata["colour_space"] == "cmyk"
    assert close(out.pixel("preview", 200 / 599, 200 / 399), expected, tolerance=40)


async def test_colour_facts_of_16_bit_grey(tmp_path: Path) -> None:
    out = await thumbnail(samples.write_png(tmp_path / "g.png", 300, 200, bits16=True), tmp_path)
    assert out.metadata["bit_depth"] == 16
    assert out.metadata["colour_space"] == "grey"
    assert out.image("preview").bands == 3


# --- alpha ---------------------------------------------------------------------------------


async def test_alpha_is_kept_in_webp_and_flattened_on_white_in_jpeg(tmp_path: Path) -> None:
    card = Image.new("RGBA", (400, 300), (*RED, 255))
    card.paste((0, 0, 0, 0), (0, 0, 100, 100))  # transparent black top-left corner
    path = tmp_path / "alpha.png"
    card.save(path)
    out = await thumbnail(path, tmp_path)
    assert out.metadata["has_alpha"] is True
    thumb = out.image("thumb")
    assert thumb.hasalpha()
    assert out.pixel("thumb", 0.02, 0.02)[3] < 5
    assert out.pixel("thumb", 0.9, 0.9)[3] > 250
    preview = out.image("preview")
    assert preview.bands == 3
    assert close(out.pixel("preview", 0.02, 0.02), (255, 255, 255), tolerance=3)
    assert close(out.pixel("preview", 0.9, 0.9), RED, tolerance=6)
    # The placeholder records the transparency too (ThumbHash's alpha flag).
    digest = base64.b64decode(out.metadata["placeholder"]["thumbhash"])
    assert digest[2] & 0x80


# --- privacy and EXIF facts ----------------------------------------------------------------


async def test_renditions_carry_no_exif_gps_or_xmp(tmp_path: Path) -> None:
    path = samples.write_jpeg(
        tmp_path / "gps.jpg", 1600, 1200, orientation=6, gps=(48.8584, 2.2945), camera=True
    )
    assert b"GPS" in path.read_bytes() or b"\x88\x25" in path.read_bytes()
    out = await thumbnail(path, tmp_path)
    for name, rendition in out.renditions.items():
        image = out.image(name)
        fields = set(image.get_fields())
        assert not {f for f in fields if f.startswith(("exif", "xmp", "iptc"))}, (name, fields)
        assert image.get_typeof("icc-profile-data") == 0
        raw = rendition.path.read_bytes()
        assert b"Exif\x00\x00" not in raw
        assert b"Apple" not in raw
        assert b"iPhone" not in raw


async def test_camera_facts_and_location_are_normalised(tmp_path: Path) -> None:
    path = samples.write_jpeg(tmp_path / "cam.jpg", camera=True, gps=(-33.856784, 151.215297))
    out = await thumbnail(path, tmp_path)
    assert out.metadata["taken_at"] == "2024-07-14T18:03:11.250+02:00"
    assert out.metadata["camera"] == {
        "make": "Apple",
        "model": "iPhone 15 Pro",
        "lens": "iPhone 15 Pro back triple camera 6.86mm f/1.78",
        "lens_make": "Apple",
        "exposure_time": pytest.approx(1 / 120, abs=1e-6),
        "f_number": 1.78,
        "iso": 64,
        "focal_length": 6.86,
        "focal_length_35mm": 24,
    }
    location = out.metadata["location"]
    assert location["latitude"] == pytest.approx(-33.856784, abs=1e-5)
    assert location["longitude"] == pytest.approx(151.215297, abs=1e-5)


async def test_heic_from_a_phone_gets_renditions_and_its_exif(tmp_path: Path) -> None:
    path = samples.write_heic(tmp_path / "phone.heic", 1024, 768, gps=(37.3349, -122.009))
    out = await thumbnail(path, tmp_path)
    assert (out.image("preview").width, out.image("preview").height) == (1024, 768)
    assert out.image("preview").deviate() > 10
    assert out.metadata["camera"]["model"] == "iPhone 15 Pro"
    assert out.metadata["location"]["latitude"] == pytest.approx(37.3349, abs=1e-4)
    assert b"Exif\x00\x00" not in out.renditions["preview"].path.read_bytes()


def jpeg_with_exif(path: Path, exif_payload: bytes) -> Path:
    """A JPEG whose APP1 EXIF segment holds ``exif_payload`` verbatim."""
    body = samples.write_jpeg(path.with_suffix(".plain.jpg"), 320, 240).read_bytes()
    segment = b"Exif\x00\x00" + exif_payload
    app1 = b"\xff\xe1" + struct.pack(">H", len(segment) + 2) + segment
    path.write_bytes(body[:2] + app1 + body[2:])
    return path


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x00" * 64,
        b"II*\x00" + b"\xff" * 60,  # first IFD offset far past the end
        b"MM\x00*\x00\x00\x00\x08\x00\x05" + b"\x01\x0f\x00\x02\xff\xff\xff\xff" * 5,
        bytes(range(256)) * 4,
    ],
    ids=["empty", "zeros", "bad-offset", "huge-counts", "garbage"],
)
async def test_a_malformed_exif_block_never_fails_the_photo(payload: bytes, tmp_path: Path) -> None:
    out = await thumbnail(jpeg_with_exif(tmp_path / "bad-exif.jpg", payload), tmp_path)
    assert out.image("preview").width == 320
    assert "location" not in out.metadata


async def test_nonsense_exif_values_are_left_out(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010F] = "   \x00\x00"
    exif[0x8769] = {0x9003: "0000:00:00 00:00:00", 0x829D: 0.0, 0x8827: 0}
    nan = TiffImagePlugin.IFDRational(1, 0)  # a zero denominator, as broken writers leave
    exif[0x8825] = {1: "N", 2: (nan, 0.0, 0.0), 3: "E", 4: (200.0, 0.0, 0.0)}
    path = tmp_path / "nonsense.jpg"
    samples.picture(320, 240).save(path, "JPEG", exif=exif.tobytes())
    out = await thumbnail(path, tmp_path)
    assert "taken_at" not in out.metadata
    assert "camera" not in out.metadata
    assert "location" not in out.metadata


# --- animation -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gif", "webp"])
async def test_animations_get_an_animated_thumb_and_a_still_preview(
    kind: str, tmp_path: Path
) -> None:
    if kind == "gif":
        path = samples.write_gif(tmp_path / "a.gif", 400, 300, frames=6)
    else:
        path = samples.write_webp(tmp_path / "a.webp", 400, 300, frames=6)
    out = await thumbnail(path, tmp_path)
    assert out.metadata["animated"] is True
    assert out.metadata["frames"] == 6
    thumb = out.image("thumb", n=-1)
    assert thumb.get("n-pages") == 6
    assert thumb.get("page-height") == 240
    assert thumb.width == 320
    assert len(thumb.get("delay")) == 6
    assert all(delay >= 20 for delay in thumb.get("delay"))
    assert out.renditions["thumb"].extra["frames"] == 6
    assert out.renditions["thumb"].height == 240
    preview = out.image("preview")
    assert (preview.width, preview.height) == (400, 300)
    # Frames differ (the card moves), so the animation is not one frame repeated.
    first = thumb.crop(0, 0, 320, 240)
    last = thumb.crop(0, 240 * 5, 320, 240)
    assert (first - last).abs().avg() > 2


async def test_long_animations_are_cut_to_the_frame_limit(tmp_path: Path) -> None:
    path = samples.write_gif(tmp_path / "long.gif", 100, 80, frames=12)
    out = await thumbnail(path, tmp_path, ThumbnailOptions(max_animation_frames=4))
    assert out.image("thumb", n=-1).get("n-pages") == 4
    assert out.metadata["frames"] == 12


# --- damage, lies and bombs ----------------------------------------------------------------


async def test_a_damaged_jpeg_that_viewers_open_gets_renditions_and_a_warning(
    tmp_path: Path,
) -> None:
    out = await thumbnail(
        broken_samples.write_damaged_jpeg(tmp_path / "d.jpg", 1200, 800), tmp_path
    )
    assert (out.image("preview").width, out.image("preview").height) == (1200, 800)
    assert len(out.warnings) == 1
    assert "damaged" in out.warnings[0]
    assert str(tmp_path) not in out.warnings[0]
    # The top of the picture, which the file still holds, is really there.
    assert out.image("preview").crop(0, 0, 1200, 300).deviate() > 10


async def test_a_jpeg_with_no_picture_data_is_bad_media(tmp_path: Path) -> None:
    whole = samples.write_jpeg(tmp_path / "whole.jpg", 640, 480).read_bytes()
    start_of_scan = whole.index(b"\xff\xda")
    path = tmp_path / "headers-only.jpg"
    path.write_bytes(whole[: start_of_scan + 40])
    reason = await refused(path, tmp_path)
    assert "JPEG" in reason
    assert str(tmp_path) not in reason


async def test_a_decompression_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    path = broken_samples.write_png_bomb(tmp_path / "bomb.png", 50_000, 50_000)
    reason = await refused(path, tmp_path)
    assert "2500 megapixels" in reason
    assert "limit of 200 megapixels" in reason


async def test_the_pixel_limit_is_a_setting(tmp_path: Path) -> None:
    path = samples.write_jpeg(tmp_path / "a.jpg", 1200, 800)
    reason = await refused(path, tmp_path, max_pixels=500_000)
    assert "0.96 megapixels" not in reason  # whole megapixels, as people read them
    assert "limit of 0.5 megapixels" in reason
    out = await thumbnail(path, tmp_path, max_pixels=1_000_000)
    assert out.image("preview").width == 1200


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("zero.jpg", b""),
        ("random.jpg", bytes(np.random.default_rng(7).integers(0, 256, 5000, dtype=np.uint8))),
        ("page.jpg", b"<!doctype html><html><body>hello</body></html>"),
        ("drawing.jpg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'),
    ],
)
async def test_files_that_are_not_photos_fail_with_a_reason(
    name: str, content: bytes, tmp_path: Path
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BadMediaError) as caught:
        await thumbnail(path, tmp_path)
    assert str(caught.value)
    assert str(tmp_path) not in str(caught.value)


# --- placeholder ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(32, 32), (32, 21), (17, 32), (100, 75)])
def test_thumbhash_encoder_matches_the_reference_port_on_opaque_images(
    size: tuple[int, int],
) -> None:
    card = samples.picture(*size).convert("RGBA")
    rgba = np.asarray(card, dtype=np.uint8)
    reference = bytes(thumbhash.rgba_to_thumb_hash(size[0], size[1], rgba.tobytes()))
    assert rgba_to_thumbhash(rgba) == reference
    average = thumbhash.thumb_hash_to_average_rgba(list(reference))
    assert average[3] == pytest.approx(1.0)


async def test_the_placeholder_is_the_thumbhash_of_the_photo_upright(tmp_path: Path) -> None:
    # Stored sideways (EXIF 6, turn 90 degrees clockwise): red on top is red on the right.
    card = Image.new("RGB", (900, 1600), BLUE)
    card.paste(RED, (0, 0, 900, 800))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "halves.jpg"
    card.save(path, "JPEG", quality=95, exif=exif.tobytes())
    out = await thumbnail(path, tmp_path)
    digest = base64.b64decode(out.metadata["placeholder"]["thumbhash"])
    upright = ImageOps.exif_transpose(Image.open(path)).resize((32, 18), Image.Resampling.BOX)
    assert digest == rgba_to_thumbhash(np.asarray(upright.convert("RGBA"), dtype=np.uint8))
    assert thumbhash.thumb_hash_to_approximate_aspect_ratio(list(digest)) > 1
    average = thumbhash.thumb_hash_to_average_rgba(list(digest))
    mean = [(r + b) / 2 / 255 for r, b in zip(RED, BLUE, strict=True)]
    assert average[:3] == pytest.approx(mean, abs=0.03)
    assert average[3] == pytest.approx(1.0)


def test_thumbhash_refuses_images_over_100_pixels() -> None:
    with pytest.raises(ValueError, match="100x100"):
        rgba_to_thumbhash(np.zeros((101, 10, 4), dtype=np.uint8))


# --- memory --------------------------------------------------------------------------------

_PEAK_RSS_SCRIPT = """
import sys, pathlib
from stages import Job, MediaKind
from stages.probe.stage import ProbeStage
from stages.photo.stage import ThumbnailOptions, ThumbnailStage
path, workdir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
probed = ProbeStage(ProbeStage.Options()).run_sync(Job.standalone(path, workdir))
stage = ThumbnailStage(ThumbnailOptions())
result = stage.run_sync(Job.standalone(
    path, workdir, kind=MediaKind.IMAGE, metadata=probed.metadata, options=stage.options))
assert {r.name for r in result.renditions} == {"thumb", "preview"}
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking (pytest) process.
print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) // 1024)
"""


def test_a_100_megapixel_jpeg_is_processed_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "huge.jpg"
    card = pyvips.Image.new_from_array(np.asarray(samples.picture(1000, 750)))
    card.resize(11.55, kernel="linear").jpegsave(str(path), Q=85)  # 11550 x 8663
    huge = pyvips.Image.new_from_file(str(path))
    assert huge.width * huge.height >= 100_000_000
    run = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_SCRIPT, str(path), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    peak_mb = int(run.stdout.strip().splitlines()[-1])
    assert peak_mb < 400, f"peak RSS {peak_mb} MB"


async def test_what_libvips_refuses_past_the_header_fails_the_photo_not_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise pyvips.Error("unable to call icc_transform", "icc_transform: bad profile")

    monkeypatch.setattr("stages.photo.stage.render_stills", refuse)
    reason = await refused(samples.write_jpeg(tmp_path / "a.jpg", 320, 240), tmp_path)
    assert reason == "could not make renditions of the JPEG: bad profile"
