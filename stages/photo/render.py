"""Web renditions from one decoded picture, shared by photos and video posters.

A caller decodes once, upright, shrunk to about the largest box (:func:`largest_box`), and hands
the picture to :func:`render_stills`: it is brought to 8-bit sRGB once, held in memory, and every
rendition is derived from that copy. Renditions carry no metadata at all (no EXIF, GPS, XMP or
ICC profile: they are sRGB, which is what browsers assume without one).

Saving is split where the blame changes: pixels are computed in memory first (a colour profile
that cannot be applied is the photo's fault, and surfaces as the :class:`pyvips.Error` it is),
then libvips encodes to memory and Python writes the file. A failing encoder or write (a full
disk, an I/O error) is ours and raises :class:`TransientError`, with nothing partial left behind.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyvips
from pydantic import BaseModel, ConfigDict, Field

from stages.contract import Rendition, TransientError
from stages.photo.placeholder import rgba_to_thumbhash
from stages.probe.stage import vips_reason

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
    """Every still rendition of ``picture`` (upright, any size and colour) and its placeholder.

    All or nothing: when one rendition fails, the files of those already written are removed.
    """
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TransientError(
            f"could not make the renditions' directory: {_os_reason(error)}"
        ) from error
    box = largest_box(specs)
    picture = fit(picture, box)
    # One materialised sRGB copy, then each smaller size from the one before it (held in
    # memory too): nothing re-runs the decode, and every resize starts from the fewest pixels.
    current = to_srgb(picture).copy_memory()
    renditions: list[Rendition] = []
    try:
        for spec in sorted(specs, key=lambda spec: spec.size, reverse=True):
            fitted = fit(current, spec.size)
            if fitted is not current:
                fitted = fitted.copy_memory()
            renditions.append(save(fitted, workdir / f"{spec.name}{_SUFFIXES[spec.format]}", spec))
            current = fitted
    except BaseException:
        discard(renditions)
        raise
    return Stills(renditions=renditions, placeholder=thumbhash_of(current) if placeholder else None)


def save(image: pyvips.Image, path: Path, spec: RenditionSpec) -> Rendition:
    """Encode one rendition, stripped of every metadata block; JPEG is flattened on white."""
    if spec.format == "jpeg" and image.hasalpha():
        image = image.flatten(background=_WHITE)
    encoders: dict[str, Callable[[pyvips.Image], bytes]] = {
        "jpeg": lambda pixels: pixels.jpegsave_buffer(Q=spec.quality, keep="none"),
        "webp": lambda pixels: pixels.webpsave_buffer(Q=spec.quality, keep="none"),
        "avif": lambda pixels: pixels.heifsave_buffer(
            Q=spec.quality, compression="av1", effort=4, keep="none"
        ),
        "png": lambda pixels: pixels.pngsave_buffer(compression=6, keep="none"),
    }
    encode_to_file(image, path, encoders[spec.format], f"the {spec.name} rendition")
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
    # The colour conversion runs here, in memory, apart from the encoder (encode_to_file); a
    # no-op when the frames are sRGB in memory already, as decoded GIFs and video frames are.
    strip = to_srgb(frames).copy_memory().copy()
    strip.set_type(pyvips.GValue.array_int_type, "delay", [max(20, int(d)) for d in delays_ms])
    strip.set_type(pyvips.GValue.gint_type, "loop", 0)
    # Neither min_size (0.5 % smaller, twice the CPU for 24 frames of 320 px) nor mixed (lossy or
    # lossless per frame: 20 times the CPU for the same bytes) pays for itself on a preview.
    encode_to_file(
        strip,
        path,
        lambda pixels: pixels.webpsave_buffer(Q=spec.quality, keep="none"),
        f"the animated {spec.name} rendition",
    )
    page_height = int(frames.get("page-height"))
    return Rendition(
        name=spec.name,
        path=path,
        content_type=spec.content_type,
        width=strip.width,
        height=page_height,
        extra={"animated": True, "frames": strip.height // page_height},
    )


def encode_to_file(
    image: pyvips.Image, path: Path, encode: Callable[[pyvips.Image], bytes], what: str
) -> None:
    """Encode ``image`` with ``encode`` and write the bytes to ``path``.

    ``image`` is computed already (in memory, or a cheap view of memory), so nothing failing
    here can be the photo's: an encoder error or any OSError of the write is a TransientError,
    and a partly written file is removed.
    """
    try:
        data = encode(image)
    except pyvips.Error as error:
        raise TransientError(f"could not encode {what}: {vips_reason(error, path)}") from error
    try:
        with path.open("wb") as out:
            out.write(data)
    except OSError as error:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        raise TransientError(f"could not write {what}: {_os_reason(error)}") from error


def discard(renditions: Sequence[Rendition]) -> None:
    """Remove the files of ``renditions`` (after a failure), ignoring those already gone."""
    for rendition in renditions:
        with contextlib.suppress(OSError):
            rendition.path.unlink(missing_ok=True)


def _os_reason(error: OSError) -> str:
    # The errno's text ("No space left on device"), without the path of our own spool.
    return error.strerror or type(error).__name__


def thumbhash_of(image: pyvips.Image) -> str:
    """The ThumbHash of ``image`` (8-bit sRGB, ideally small), base64: a blurred grid preview."""
    # Box-average down to the placeholder size in libvips (``shrink`` on whole blocks, the
    # remainder cropped), so NumPy only ever sees ~1,000 pixels: a float copy and mean of the
    # 320 px thumb cost 3 ms under the GIL, this costs 0.5 ms, and ThumbHash keeps only the
    # lowest frequencies anyway.
    step = max(1, -(-max(image.width, image.height) // _PLACEHOLDER_SIZE))
    step_x, step_y = min(step, image.width), min(step, image.height)  # a 1000 x 3 strip too
    if step_x > 1 or step_y > 1:
        width, height = image.width // step_x, image.height // step_y
        image = image.crop(0, 0, width * step_x, height * step_y).shrink(step_x, step_y)
    pixels = np.asarray(image.numpy(), dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.shape[2] in (1, 2):  # grey (+ alpha)
        pixels = np.concatenate([pixels[:, :, :1]] * 3 + [pixels[:, :, 1:]], axis=2)
    if pixels.shape[2] == 3:
        pixels = np.concatenate([pixels, np.full((*pixels.shape[:2], 1), 255, np.uint8)], axis=2)
    return base64.b64encode(rgba_to_thumbhash(np.ascontiguousarray(pixels))).decode("ascii")


def fit(image: pyvips.Image, size: int) -> pyvips.Image:
    """``image`` shrunk (Lanczos) to fit ``size`` x ``size``, or as it is when it already fits.

    One ``resize`` rather than ``thumbnail_image``, whose extra steps cost more in building the
    operations than in pixels at these sizes; alpha is premultiplied so edges do not darken.
    ``gap=0``: Lanczos all the way, no box shrink first (libvips' default from a factor of 4),
    which is both the better filter and, on the vector path, faster: 1440 to 320 px in 3.6 ms
    instead of 5.1.
    """
    if image.width <= size and image.height <= size:
        return image
    scale = size / max(image.width, image.height)
    width = max(1, round(image.width * scale))
    height = max(1, round(image.height * scale))
    hscale, vscale = width / image.width, height / image.height
    if not image.hasalpha():
        return image.resize(hscale, vscale=vscale, kernel="lanczos3", gap=0.0)
    resized = image.premultiply().resize(hscale, vscale=vscale, kernel="lanczos3", gap=0.0)
    return resized.unpremultiply().cast(image.format)
