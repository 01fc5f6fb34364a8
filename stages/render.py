"""Web renditions from one decoded picture, shared by photos and video posters.

A caller decodes once, upright, shrunk to about the largest box (:func:`largest_box`), and hands
the picture to :func:`render_stills`: it is brought to 8-bit sRGB once, held in memory, and every
rendition is derived from that copy. Renditions carry no metadata at all (no EXIF, GPS, XMP or
ICC profile: they are sRGB, which is what browsers assume without one).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyvips
from pydantic import BaseModel, ConfigDict, Field

from stages.contract import Rendition
from stages.placeholder import rgba_to_thumbhash

ImageFormat = Literal["webp", "jpeg", "avif", "png"]

CONTENT_TYPES: dict[str, str] = {
    "webp": "image/webp",
    "jpeg": "image/jpeg",
    "avif": "image/avif",
    "png": "image/png",
}
_SUFFIXES = {"webp": ".webp", "jpeg": ".jpg", "avif": ".avif", "png": ".png"}
_WHITE = [255, 255, 255]
# ThumbHash keeps only the lowest frequencies: 32 px gives the same hash as 100 px, 9x faster.
_PLACEHOLDER_SIZE = 32


class RenditionSpec(BaseModel):
    """One still rendition: fits inside ``size`` x ``size`` pixels, never upscaled."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    size: int = Field(ge=16, le=8192)
    format: ImageFormat
    quality: int = Field(default=80, ge=1, le=100)

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


DEFAULT_RENDITIONS: tuple[RenditionSpec, ...] = (
    RenditionSpec(name="thumb", size=320, format="webp", quality=80),
    RenditionSpec(name="preview", size=1440, format="jpeg", quality=80),
)


@dataclass(frozen=True, slots=True)
class Stills:
    """What :func:`render_stills` made: the rendition files and the placeholder hash."""

    renditions: list[Rendition]
    placeholder: str | None


def largest_box(specs: Sequence[RenditionSpec]) -> int:
    """The box to decode to: the largest rendition's (shrink-on-load aims at it)."""
    return max(spec.size for spec in specs)


def picture_from_rgb(array: Any) -> pyvips.Image:
    """A picture from an H x W x 3 (or 4) uint8 array, such as a decoded video frame."""
    image: pyvips.Image = pyvips.Image.new_from_array(array)
    return image.copy(interpretation="srgb")


def to_srgb(image: pyvips.Image) -> pyvips.Image:
    """8-bit sRGB (plus alpha when present): embedded ICC profiles converted, 16-bit reduced.

    An image without a profile is taken as sRGB; CMYK without one gets libvips' generic profile.
    """
    if image.get_typeof("icc-profile-data") != 0:
        image = image.icc_transform("srgb", embedded=True, intent="perceptual")
    elif image.interpretation == "cmyk":
        image = image.icc_transform("srgb", input_profile="cmyk", intent="perceptual")
    if image.interpretation != "srgb" or image.format != "uchar":
        image = image.colourspace("srgb")
    if image.format != "uchar":
        image = image.cast("uchar")
    if image.bands > 4:  # extra channels (a TIFF's spot colours) have no place on the web
        image = image.extract_band(0, n=4 if image.hasalpha() else 3)
    return image


def render_stills(
    picture: pyvips.Image,
    specs: Sequence[RenditionSpec],
    workdir: Path,
    *,
    placeholder: bool = True,
) -> Stills:
    """Every still rendition of ``picture`` (upright, any size and colour) and its placeholder."""
    workdir.mkdir(parents=True, exist_ok=True)
    box = largest_box(specs)
    if picture.width > box or picture.height > box:
        picture = picture.thumbnail_image(box, height=box, size="down")
    # One materialised sRGB copy: every rendition reads it instead of re-running the decode.
    base = to_srgb(picture).copy_memory()
    renditions = [
        save(_fit(base, spec.size), workdir / f"{spec.name}{_SUFFIXES[spec.format]}", spec)
        for spec in sorted(specs, key=lambda spec: spec.size, reverse=True)
    ]
    return Stills(renditions=renditions, placeholder=thumbhash_of(base) if placeholder else None)


def save(image: pyvips.Image, path: Path, spec: RenditionSpec) -> Rendition:
    """Encode one rendition, stripped of every metadata block; JPEG is flattened on white."""
    if spec.format == "jpeg":
        if image.hasalpha():
            image = image.flatten(background=_WHITE)
        image.jpegsave(str(path), Q=spec.quality, optimize_coding=True, keep="none")
    elif spec.format == "webp":
        image.webpsave(str(path), Q=spec.quality, keep="none")
    elif spec.format == "avif":
        image.heifsave(str(path), Q=spec.quality, compression="av1", effort=4, keep="none")
    else:
        image.pngsave(str(path), compression=6, keep="none")
    height = image.get("page-height") if image.get_typeof("page-height") else image.height
    return Rendition(
        name=spec.name,
        path=path,
        content_type=spec.content_type,
        width=image.width,
        height=int(height),
    )


def save_animation(
    frames: pyvips.Image, path: Path, spec: RenditionSpec, *, delays_ms: Sequence[int]
) -> Rendition:
    """An animated WebP from a strip of equal frames stacked vertically (libvips' layout).

    ``frames`` must carry ``page-height``; each frame shows for its entry of ``delays_ms``.
    """
    if spec.format != "webp":
        raise ValueError(f"animated renditions are WebP, not {spec.format}")
    strip = to_srgb(frames).copy()
    strip.set_type(pyvips.GValue.array_int_type, "delay", [max(20, int(d)) for d in delays_ms])
    strip.set_type(pyvips.GValue.gint_type, "loop", 0)
    # Neither min_size (0.5 % smaller, twice the CPU for 24 frames of 320 px) nor mixed (lossy or
    # lossless per frame: 20 times the CPU for the same bytes) pays for itself on a preview.
    strip.webpsave(str(path), Q=spec.quality, keep="none")
    page_height = int(frames.get("page-height"))
    return Rendition(
        name=spec.name,
        path=path,
        content_type=spec.content_type,
        width=strip.width,
        height=page_height,
        extra={"animated": True, "frames": strip.height // page_height},
    )


def thumbhash_of(image: pyvips.Image) -> str:
    """The ThumbHash of ``image`` (8-bit sRGB), base64: a ~25-byte blurred preview for grids."""
    small = image.thumbnail_image(_PLACEHOLDER_SIZE, height=_PLACEHOLDER_SIZE)
    if not small.hasalpha():
        small = small.bandjoin(255)
    rgba = np.frombuffer(small.cast("uchar").write_to_memory(), dtype=np.uint8)
    digest = rgba_to_thumbhash(rgba.reshape(small.height, small.width, 4))
    return base64.b64encode(digest).decode("ascii")


def _fit(image: pyvips.Image, size: int) -> pyvips.Image:
    if image.width <= size and image.height <= size:
        return image
    return image.thumbnail_image(size, height=size, size="down")
