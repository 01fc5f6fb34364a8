"""Opening a photo: header facts, the pixel limit, and one upright shrink-on-load decode.

libvips decodes every format but HEIC (pyvips-binary has no HEVC decoder): those go through
libheif in pillow-heif. A photo is decoded once, shrunk while it loads to the largest rendition
box (JPEG shrinks in the DCT, so a 100 MP photo never exists at full size in memory), upright,
and in sRGB; the renditions are derived from that one copy.

What fails while reading is blamed on the photo only when it is about its bytes: libvips may
need a temporary file for a large decode, and a full disk or an I/O error under it is this
machine's trouble, which may pass (:func:`vips_failure`).
"""

from __future__ import annotations

import errno
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pillow_heif
import pyvips
from PIL import ImageCms

from stages.contract import BadMediaError, TransientError
from stages.photo.render import fit
from stages.probe.stage import VIPS_LOADERS, vips_reason

_LABELS = {"heif": "HEIC", "tiff": "TIFF"}
_BIT_DEPTH = {"uchar": 8, "char": 8, "ushort": 16, "short": 16, "uint": 32, "float": 32}
_COLOUR_SPACES = {"srgb": "srgb", "rgb16": "srgb", "b-w": "grey", "grey16": "grey", "cmyk": "cmyk"}
# A damaged file decodes with what it lacks filled in one flat colour (libjpeg uses grey): with
# less than this share of the picture readable, there is nothing worth showing.
_MIN_READABLE = 0.05
# Errors of the machine, not of the file being read: libvips reports an OS error with its
# strerror text, whichever file (the upload, a temporary file) the call was touching.
_OWN_ERRNOS = (
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EIO,
    errno.EROFS,
    errno.EFBIG,
    errno.EMFILE,
    errno.ENFILE,
    errno.ENOMEM,
)
_OWN_FAULTS = tuple(os.strerror(code) for code in _OWN_ERRNOS)
# libvips' and its libraries' own words for a temporary file or a write that failed.
_WRITE_FAILURES = (
    "write failed",
    "unable to write",
    "out of disk space",
    "temporary file",
    "tmp file",
)


@dataclass(frozen=True, slots=True)
class PhotoHeader:
    """What the header says, read without decoding a pixel; sizes are as displayed (upright)."""

    format: str
    width: int
    height: int
    quarter_turned: bool
    pages: int
    animated: bool
    colour_space: str
    bit_depth: int
    has_alpha: bool
    icc_profile: str | None
    exif: bytes | None

    @property
    def colour_managed(self) -> bool:
        """Whether the pixels need converting to sRGB (a profile that is not sRGB's, or CMYK)."""
        if self.colour_space == "cmyk":
            return True
        return self.icc_profile is not None and not _is_srgb(self.icc_profile)

    @property
    def label(self) -> str:
        return _label(self.format)

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


@dataclass(frozen=True, slots=True)
class DecodedPhoto:
    """The upright picture, shrunk to the box and held in memory, and what went wrong on the way."""

    picture: pyvips.Image
    warnings: list[str]


def read_header(path: Path, image_format: str) -> PhotoHeader:
    """The header through the decoder that will decode the pixels; a bad header is bad media."""
    if image_format == "heif":
        return _heif_header(path)
    try:
        image: Any = pyvips.Operation.call(
            VIPS_LOADERS[image_format], str(path), access="sequential"
        )
        orientation = _int_field(image, "orientation", 1)
        pages = _int_field(image, "n-pages", 1)
        width, height = int(image.width), int(image.height)
        if image.get_typeof("page-height"):
            height = int(image.get("page-height"))
        quarter_turned = orientation in (5, 6, 7, 8)  # displayed sideways
        if quarter_turned:
            width, height = height, width
        interpretation = str(image.interpretation)
        return PhotoHeader(
            format=image_format,
            width=width,
            height=height,
            quarter_turned=quarter_turned,
            pages=pages,
            animated=image_format in ("gif", "webp") and pages > 1,
            colour_space=_COLOUR_SPACES.get(interpretation, interpretation),
            # "bits-per-sample" where the loader records it (a 10-bit AVIF loads as 16-bit).
            bit_depth=_int_field(image, "bits-per-sample", _BIT_DEPTH.get(str(image.format), 8)),
            has_alpha=bool(image.hasalpha()),
            icc_profile=_profile_name(_blob_field(image, "icc-profile-data")),
            exif=_blob_field(image, "exif-data"),
        )
    except pyvips.Error as error:
        label = _label(image_format)
        raise vips_failure(
            error, path, doing=f"reading the {label}", verdict=f"corrupt or truncated {label}"
        ) from error


def check_pixels(header: PhotoHeader, max_pixels: int) -> None:
    """Refuse decompression bombs from the header, before any memory is spent on pixels."""
    if header.width * header.height > max_pixels:
        raise BadMediaError(
            f"the {header.label} is {header.width} x {header.height} pixels "
            f"({header.megapixels:.0f} megapixels), over the limit of "
            f"{max_pixels / 1e6:g} megapixels"
        )


def decode(path: Path, header: PhotoHeader, box: int) -> DecodedPhoto:
    """First page, upright, fitting ``box``, colour in sRGB (or tagged with its ICC profile).

    A damaged file that libvips can still read most of (a truncated JPEG, bad Huffman data) is
    decoded leniently, as viewers do, and reported as a warning; one with nothing readable is
    bad media.
    """
    if header.format == "heif":
        return DecodedPhoto(_decode_heif(path, box), [])
    load = _decode_jpeg if header.format == "jpeg" else _shrink_on_load
    doing, verdict = f"decoding the {header.label}", f"corrupt or truncated {header.label}"
    try:
        return DecodedPhoto(load(path, header, box, fail_on="error"), [])
    except pyvips.Error as strict:
        failure = vips_failure(strict, path, doing=doing, verdict=verdict)
        if isinstance(failure, TransientError):
            raise failure from strict  # no lenient second try on a full disk
        damage = vips_reason(strict, path)
    try:
        picture = load(path, header, box, fail_on="none")
    except pyvips.Error as error:
        raise vips_failure(error, path, doing=doing, verdict=verdict) from error
    if _readable_share(picture) < _MIN_READABLE:
        raise BadMediaError(f"corrupt or truncated {header.label}: no picture data ({damage})")
    return DecodedPhoto(
        picture, [f"the {header.label} is damaged ({damage}); renditions show what could be read"]
    )


def decode_animation(
    path: Path, header: PhotoHeader, size: int, *, max_frames: int, max_pixels: int
) -> tuple[pyvips.Image, list[int]]:
    """The first frames of an animated GIF or WebP fitting ``size``, stacked, and their delays."""
    frames = max(
        1, min(header.pages, max_frames, max_pixels // max(1, header.width * header.height))
    )
    try:
        strip: pyvips.Image = pyvips.Image.thumbnail(
            f"{path}[n={frames}]", size, height=size, size="down", fail_on="none"
        ).copy_memory()
    except pyvips.Error as error:
        raise vips_failure(
            error,
            path,
            doing=f"decoding the animated {header.label}",
            verdict=f"corrupt animated {header.label}",
        ) from error
    delays = list(strip.get("delay")) if strip.get_typeof("delay") else []
    page_height = int(strip.get("page-height")) if strip.get_typeof("page-height") else strip.height
    count = strip.height // page_height
    # GIFs ask for 0 or 10 ms delays that every browser shows as 100 ms.
    delays = [d if d >= 20 else 100 for d in (delays + [100] * count)[:count]]
    return strip, delays


def vips_failure(
    error: pyvips.Error, path: Path, *, doing: str, verdict: str
) -> BadMediaError | TransientError:
    """What a libvips error while ``doing`` something with the photo at ``path`` means.

    A full disk under a temporary file, an I/O or quota error: this machine's trouble, retried
    later. Anything else libvips says is about the photo's bytes: ``verdict`` and its reason.
    """
    # The text can carry lines of another thread's error (libvips has one buffer per process):
    # a bad photo may then be retried before it fails, which is the cheap side to err on.
    text = str(error.detail or error.message)
    fault = next((fault for fault in _OWN_FAULTS if fault in text), None)
    if fault is None and any(words in text.lower() for words in _WRITE_FAILURES):
        fault = "a temporary file could not be written"
    if fault is not None:
        return TransientError(f"{doing} failed: {fault}")
    return BadMediaError(f"{verdict}: {vips_reason(error, path)}")


def _readable_share(picture: pyvips.Image) -> float:
    """The share of rows above the flat fill that a decoder leaves where the data ran out."""
    rows = np.asarray(picture.numpy(), dtype=np.float32)
    if rows.ndim == 2:
        rows = rows[:, :, None]
    flat = rows.reshape(rows.shape[0], -1, rows.shape[2]).std(axis=1).max(axis=1) < 1.0
    filled = int(np.argmin(flat[::-1])) if not flat.all() else len(flat)
    return 1 - filled / len(flat)


def _decode_jpeg(path: Path, header: PhotoHeader, box: int, *, fail_on: str) -> pyvips.Image:
    """Shrink in the DCT by the largest power of two that stays at or above ``box``, then
    Lanczos to the box: Pillow's draft mode, done by libvips.

    thumbnail() leaves a factor of two more headroom before its own resize, decoding a 12 MP
    photo at full size for a 1440 px preview: twice the time for no visible gain.
    """
    stored_width, stored_height = (
        (header.height, header.width) if header.quarter_turned else (header.width, header.height)
    )
    longest = max(stored_width, stored_height)
    shrink = 1
    while shrink < 8 and longest / (shrink * 2) >= box:
        shrink *= 2
    picture: pyvips.Image = pyvips.Image.jpegload(
        str(path), shrink=shrink, access="sequential", fail_on=fail_on
    )
    scale = min(1.0, box / longest)
    if scale < 1.0:
        # Exact target sizes, whatever libjpeg rounded the shrunk size to.
        width = max(1, round(stored_width * scale))
        height = max(1, round(stored_height * scale))
        picture = picture.resize(
            width / picture.width, vscale=height / picture.height, kernel="lanczos3"
        )
    # Tags are dropped before the pixels are computed, and an upright photo is not passed
    # through autorot (a copy even at orientation 1): either would hand render_stills a view
    # of the picture, which it would copy to memory a second time (3.5 ms for 1440 px).
    if not header.colour_managed:
        picture = _untagged(picture)
    picture = picture.copy_memory()
    if _int_field(picture, "orientation", 1) != 1:
        picture = picture.autorot()  # upright: cheap on the small picture
    return picture


def _shrink_on_load(path: Path, header: PhotoHeader, box: int, *, fail_on: str) -> pyvips.Image:
    # thumbnail() shrinks while loading, applies the EXIF orientation and, given an export
    # profile, converts from the embedded ICC profile (or CMYK's generic one) to sRGB. The
    # conversion doubles the cost, so photos already in sRGB skip it.
    colour: dict[str, Any] = {"export_profile": "srgb"} if header.colour_managed else {}
    picture: pyvips.Image = pyvips.Image.thumbnail(
        str(path), box, height=box, size="down", fail_on=fail_on, **colour
    )
    # The pixels are sRGB now; whatever profile is still attached (a CMYK one, say) no
    # longer describes them and must not be applied a second time.
    return _untagged(picture).copy_memory()


def _decode_heif(path: Path, box: int) -> pyvips.Image:
    try:
        heif: Any = pillow_heif.open_heif(path, convert_hdr_to_8bit=True)
        pixels = np.asarray(heif)  # the primary image, with libheif's irot/imir applied
    except (ValueError, RuntimeError, OSError) as error:
        raise _heif_failure(error, "decoding the HEIC") from error
    picture: pyvips.Image = pyvips.Image.new_from_array(pixels)
    picture = picture.copy(interpretation="srgb" if picture.bands >= 3 else "b-w")
    profile = heif.info.get("icc_profile")
    if profile:
        picture.set_type(pyvips.GValue.blob_type, "icc-profile-data", bytes(profile))
    return fit(picture, box).copy_memory()


def _heif_header(path: Path) -> PhotoHeader:
    try:
        heif: Any = pillow_heif.open_heif(path, convert_hdr_to_8bit=False)
        width, height = heif.size
        mode = str(heif.mode)
        info = heif.info
    except (ValueError, RuntimeError, OSError) as error:
        raise _heif_failure(error, "reading the HEIC") from error
    profile = info.get("icc_profile")
    return PhotoHeader(
        format="heif",
        width=int(width),
        height=int(height),
        quarter_turned=False,
        pages=len(heif),
        animated=False,
        colour_space="grey" if mode.startswith(("L", "I")) else "srgb",
        bit_depth=int(info.get("bit_depth") or 8),
        has_alpha="A" in mode,
        icc_profile=_profile_name(bytes(profile) if profile else None),
        exif=bytes(info["exif"]) if info.get("exif") else None,
    )


def _heif_failure(error: Exception, doing: str) -> BadMediaError | TransientError:
    # libheif reports what is wrong with the bytes as ValueError or RuntimeError; the OS
    # failing to read our own spool file raises an OSError with its errno.
    if isinstance(error, OSError) and error.errno in _OWN_ERRNOS:
        return TransientError(f"{doing} failed: {error.strerror}")
    return BadMediaError(f"corrupt or truncated HEIC: {error}")


def _untagged(picture: pyvips.Image) -> pyvips.Image:
    if picture.get_typeof("icc-profile-data") == 0:
        return picture
    picture = picture.copy()
    picture.remove("icc-profile-data")
    return picture


def _profile_name(profile: bytes | None) -> str | None:
    """The profile's own description ("Display P3", "Adobe RGB (1998)"), if readable."""
    if not profile:
        return None
    try:
        description = ImageCms.ImageCmsProfile(io.BytesIO(profile)).profile.profile_description
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return "unreadable ICC profile"
    if not isinstance(description, str):
        return None
    return description.strip()[:128] or None


def _label(image_format: str) -> str:
    return _LABELS.get(image_format, image_format.upper())


def _is_srgb(description: str) -> bool:
    # Cameras and editors embed the standard sRGB profile under these names; converting from it
    # to sRGB changes nothing but the time taken.
    name = description.lower()
    return name.startswith("srgb") and "linear" not in name


def _int_field(image: Any, name: str, default: int) -> int:
    return int(image.get(name)) if image.get_typeof(name) != 0 else default


def _blob_field(image: Any, name: str) -> bytes | None:
    return bytes(image.get(name)) if image.get_typeof(name) != 0 else None
