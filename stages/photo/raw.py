"""Camera RAW photos: the picture for the renditions, and the camera facts, through LibRaw.

Cameras embed a full-size JPEG of what they showed on their screen. When that preview is at
least as large as the largest rendition box it is used, shrunk while it loads (milliseconds);
otherwise, or when it is absent, damaged or of another shape than the sensor picture, the raw
data is demosaiced (seconds): camera white balance, sRGB, 8-bit, at half size whenever half is
still as large as the box. Either way the RAW's own orientation flag turns the picture upright,
and the result is an ordinary picture for :func:`stages.photo.render.render_stills`.

Camera facts go through the same EXIF reader as JPEG's (:mod:`stages.photo.exif`): from the
file's own TIFF structure where it has one, else from its preview's EXIF, with what LibRaw read
from the maker notes (lens, exposure) filling the fields those lack.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyvips
import rawpy
from PIL import Image, TiffImagePlugin
from PIL.TiffImagePlugin import IFDRational

from stages.contract import BadMediaError, TransientError
from stages.photo.decode import DecodedPhoto, PhotoHeader
from stages.photo.render import fit
from stages.probe.raw import RawFacts, open_raw, raw_facts, raw_failure

# Formats that are TIFF inside (ORF and RW2 behind a magic of their own): their EXIF is theirs.
_TIFF_BASED = {"dng", "cr2", "nef", "arw", "orf", "rw2"}
# A preview whose aspect ratio differs more than this from the sensor picture's is cropped or
# letterboxed (some cameras pad it to 16:9): the renditions come from the raw data instead.
_ASPECT_TOLERANCE = 0.02
_EXIF_IFD = 0x8769
_MAKE, _MODEL = 0x010F, 0x0110
_EXPOSURE_TIME, _F_NUMBER, _ISO, _FOCAL_LENGTH = 0x829A, 0x829D, 0x8827, 0x920A
_LENS_MAKE, _LENS_MODEL = 0xA433, 0xA434
_GPS_IFD = 0x8825
# The tags stages.photo.exif reads, copied out of the file's own blocks (not its maker notes
# or strip tables).
_IFD0_TAGS = (_MAKE, _MODEL, 0x0132)
_EXIF_TAGS = {_EXPOSURE_TIME, _F_NUMBER, _ISO, _FOCAL_LENGTH, _LENS_MAKE, _LENS_MODEL}
_EXIF_TAGS |= {0x9003, 0x9004, 0x9010, 0x9011, 0x9291, 0xA405}
CameraTags = tuple[dict[int, Any], dict[int, Any], dict[int, Any]]  # IFD 0, EXIF, GPS


def read_raw_header(path: Path, image_format: str) -> PhotoHeader:
    """The header facts of a RAW file as of any photo: sizes as displayed, 8-bit sRGB output."""
    label = image_format.upper()
    with open_raw(path, label) as raw:
        facts = raw_facts(raw)
        exif = camera_exif(_own_tags(path, image_format) or _preview_tags(raw), raw)
    width, height = facts.displayed
    if width < 1 or height < 1:
        raise BadMediaError(f"corrupt or truncated {label}: the header gives no picture size")
    return PhotoHeader(
        format=image_format,
        width=width,
        height=height,
        quarter_turned=facts.quarter_turned,
        pages=1,
        animated=False,
        colour_space="srgb",
        bit_depth=facts.bit_depth,
        has_alpha=False,
        icc_profile=None,
        exif=exif,
    )


def develop(path: Path, header: PhotoHeader, box: int, *, max_pixels: int) -> DecodedPhoto:
    """The upright picture fitting ``box``: the embedded preview when large enough, else the
    demosaiced raw data."""
    with open_raw(path, header.label) as raw:
        facts = raw_facts(raw)
        check_sensor(facts, header.label, max_pixels)
        picture = embedded_preview(raw, facts, box, max_pixels=max_pixels)
        if picture is None:
            picture = demosaic(raw, facts, header, box, path=path)
    return DecodedPhoto(picture, [])


def check_sensor(facts: RawFacts, label: str, max_pixels: int) -> None:
    """Refuse a sensor area over the pixel limit: LibRaw unpacks all of it, margins included."""
    pixels = facts.raw_width * facts.raw_height
    if pixels > max_pixels:
        raise BadMediaError(
            f"the {label}'s raw data is {facts.raw_width} x {facts.raw_height} pixels "
            f"({pixels / 1e6:.0f} megapixels), over the limit of {max_pixels / 1e6:g} megapixels"
        )


def embedded_preview(
    raw: Any, facts: RawFacts, box: int, *, max_pixels: int
) -> pyvips.Image | None:
    """The embedded preview, upright and fitting ``box``, when it can stand for the photo."""
    try:
        thumb = raw.extract_thumb()
    except rawpy.LibRawError:
        # None, of a kind LibRaw does not extract, or damaged: the raw data decides whether
        # the file is readable.
        return None
    try:
        if thumb.format == rawpy.ThumbFormat.JPEG:
            preview: pyvips.Image = pyvips.Image.jpegload_buffer(thumb.data, fail_on="error")
        else:
            preview = pyvips.Image.new_from_array(np.ascontiguousarray(thumb.data))
            preview = preview.copy(interpretation="srgb" if preview.bands >= 3 else "b-w")
        stored = (facts.width, facts.height)
        upright = _matches(preview, facts.displayed) and not _matches(preview, stored)
        longest, needed = max(preview.width, preview.height), min(box, max(stored))
        if not (_matches(preview, stored) or upright) or longest < needed:
            return None
        if preview.width * preview.height > max_pixels:
            return None  # a preview larger than the limit is not decoded, whatever the raw is
        if thumb.format == rawpy.ThumbFormat.JPEG:
            # Shrink in the DCT while loading; the preview's own EXIF orientation is ignored,
            # the RAW's flag is the camera's word on it.
            preview = pyvips.Image.thumbnail_buffer(
                thumb.data, box, height=box, size="down", no_rotate=True, fail_on="error"
            )
        else:
            preview = fit(preview, box)
        # In memory before turning it: the shrinking load reads the JPEG once, top to bottom.
        preview = preview.copy_memory()
        return preview if upright else _oriented(preview, facts.orientation).copy_memory()
    except pyvips.Error:
        return None  # an undecodable preview: demosaic instead


def demosaic(
    raw: Any, facts: RawFacts, header: PhotoHeader, box: int, *, path: Path
) -> pyvips.Image:
    """The raw data developed to 8-bit sRGB with the camera's white balance, upright."""
    try:
        pixels = raw.postprocess(
            use_camera_wb=True,
            output_color=rawpy.ColorSpace.sRGB,
            output_bps=8,
            # Half size skips interpolation altogether (each 2x2 cell becomes one pixel): four
            # times fewer pixels, many times faster, and still at least the box.
            half_size=max(facts.width, facts.height) // 2 >= box,
        )
    except (rawpy.LibRawError, MemoryError) as error:
        raise raw_failure(
            error, path, header.label, doing=f"decoding the {header.label}"
        ) from error
    picture: pyvips.Image = pyvips.Image.new_from_array(np.ascontiguousarray(pixels))
    picture = picture.copy(interpretation="srgb")  # LibRaw applies the flip itself
    try:
        return fit(picture, box).copy_memory()
    except pyvips.Error as error:  # resizing memory we hold: nothing about the file
        raise TransientError(f"resizing the developed {header.label} failed") from error


def camera_exif(own: CameraTags | None, raw: Any) -> bytes | None:
    """An EXIF block of the camera facts: the file's own fields, then LibRaw's for the gaps."""
    ifd0, details, gps = own or ({}, {}, {})
    exif = Image.Exif()
    for tag in _IFD0_TAGS:
        if tag in ifd0:
            exif[tag] = ifd0[tag]
    details = {tag: value for tag, value in details.items() if tag in _EXIF_TAGS}
    for tag, read in _LIBRAW_FACTS:
        if tag not in details:
            value = _fact(read, raw)
            if value is not None:
                details[tag] = value
    if details:
        exif[_EXIF_IFD] = details
    if gps:
        exif[_GPS_IFD] = gps
    if not len(exif):
        return None
    try:
        return bytes(exif.tobytes())
    except Exception:  # a value Pillow cannot write back: no facts rather than no photo
        return None


def _fact(read: Callable[[Any], Any], raw: Any) -> Any:
    try:
        return read(raw)
    except Exception:  # an odd value from LibRaw costs only its own field
        return None


def _text_or_none(value: Any) -> str | None:
    text = str(value or "").strip()
    return text or None


def _positive_rational(value: Any) -> IFDRational | None:
    number = float(value or 0)
    if not number > 0:
        return None
    fraction = Fraction(number).limit_denominator(1_000_000)  # 1/250 s, not 0.004000000189
    return IFDRational(fraction.numerator, fraction.denominator)


_LIBRAW_FACTS: tuple[tuple[int, Callable[[Any], Any]], ...] = (
    (_LENS_MODEL, lambda raw: _text_or_none(raw.lens.model)),
    (_LENS_MAKE, lambda raw: _text_or_none(raw.lens.make)),
    (_EXPOSURE_TIME, lambda raw: _positive_rational(raw.other.shutter_speed)),
    (_F_NUMBER, lambda raw: _positive_rational(raw.other.aperture)),
    (_FOCAL_LENGTH, lambda raw: _positive_rational(raw.other.focal_length)),
    (_ISO, lambda raw: int(raw.other.iso_speed) if raw.other.iso_speed >= 1 else None),
)


def _own_tags(path: Path, image_format: str) -> CameraTags | None:
    """IFD 0, the EXIF IFD and the GPS IFD of a TIFF-based RAW file, read where they are."""
    if image_format not in _TIFF_BASED:
        return None
    try:
        with path.open("rb") as file:
            header = file.read(8)
            if len(header) < 8:
                return None
            # ORF ("IIRO") and RW2 ("IIU\0") are TIFF under another magic number.
            header = (b"II*\x00" if header[:2] == b"II" else b"MM\x00*") + header[4:]
            ifd0 = _ifd_at(file, header, None)
            return (
                ifd0,
                _ifd_at(file, header, ifd0.get(_EXIF_IFD)),
                _ifd_at(file, header, ifd0.get(_GPS_IFD)),
            )
    except OSError as error:
        label = image_format.upper()
        raise TransientError(f"reading the {label} failed: {error.strerror}") from error


def _ifd_at(file: BinaryIO, header: bytes, offset: Any) -> dict[int, Any]:
    """The tags of the IFD at ``offset`` (IFD 0 for None); {} when it cannot be read."""
    try:
        directory = TiffImagePlugin.ImageFileDirectory_v2(header)
        if offset is not None and not isinstance(offset, int):
            return {}
        file.seek(directory.next if offset is None else offset)
        directory.load(file)
        return dict(directory)
    except (SyntaxError, ValueError, TypeError, struct.error, EOFError):
        return {}  # a malformed IFD: no facts from it, as for a JPEG's broken EXIF


def _preview_tags(raw: Any) -> CameraTags | None:
    """The embedded JPEG preview's EXIF (Fujifilm's RAF keeps its camera facts there)."""
    try:
        thumb = raw.extract_thumb()
        if thumb.format != rawpy.ThumbFormat.JPEG:
            return None
        preview: pyvips.Image = pyvips.Image.jpegload_buffer(thumb.data)
        if not preview.get_typeof("exif-data"):
            return None
        exif = Image.Exif()
        exif.load(bytes(preview.get("exif-data")))
        return dict(exif), dict(exif.get_ifd(_EXIF_IFD)), dict(exif.get_ifd(_GPS_IFD))
    except Exception:  # rawpy, libvips or Pillow: an unreadable preview gives no facts
        return None


def _matches(image: pyvips.Image, size: tuple[int, int]) -> bool:
    width, height = size
    aspect = width / height
    return bool(abs(image.width / image.height - aspect) <= _ASPECT_TOLERANCE * aspect)


def _oriented(picture: pyvips.Image, orientation: int) -> pyvips.Image:
    if orientation == 1:
        return picture
    picture = picture.copy()
    picture.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    upright: pyvips.Image = picture.autorot()
    return upright
