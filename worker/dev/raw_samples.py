"""Camera RAW sample files: DNG and NEF written the way cameras and converters lay them out.

tifffile writes the TIFF structure: IFD 0 holds the DNG tags, the camera's make and model and
the embedded JPEG preview (NewSubfileType 1, JPEG-compressed as cameras store it); its SubIFD
holds the raw sensor data, a 12-bit RGGB Bayer mosaic of a known scene in linear light, with
a colour matrix that makes the camera's colour space linear sRGB. The preview is encoded by
libvips and spliced in after tifffile has written the file, as tifffile itself needs the
imagecodecs package to write JPEG strips; the EXIF IFD (lens, exposure) is written by Pillow.
LibRaw reads every part of it.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyvips
import tifffile
from PIL import TiffImagePlugin
from PIL.TiffImagePlugin import IFDRational

# The scene, as stored (sensor orientation): a colour per quadrant, in reading order.
QUADRANTS = ((230, 20, 20), (20, 200, 40), (30, 40, 220), (128, 128, 128))
# What a marked preview shows in its bottom-right quadrant instead of grey, so a test can tell
# a rendition made from the preview from one developed from the raw data.
PREVIEW_MARK = (250, 240, 30)
_BLACK, _WHITE = 64, 4095
# XYZ (D65) to linear sRGB: as ColorMatrix1 it makes the camera's native space linear sRGB.
_XYZ_TO_SRGB = (3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415, 0.0557, -0.2040, 1.0570)
_EXIF_IFD, _GPS_IFD = 34665, 34853
# tifffile refuses to write the EXIF and GPS IFD pointers itself; it writes these unassigned
# tags, which sort next to them, and _splice renames the entries once the IFDs are in the file.
_EXIF_STAND_IN, _GPS_STAND_IN = 34666, 34854
# tifffile's tag types
_BYTE, _ASCII, _SHORT, _LONG, _RATIONAL, _SRATIONAL = 1, 2, 3, 4, 5, 10


def scene(width: int, height: int, *, mark: bool = False) -> np.ndarray:
    """The scene as 8-bit sRGB, H x W x 3."""
    pixels = np.empty((height, width, 3), np.uint8)
    colours = list(QUADRANTS)
    if mark:
        colours[3] = PREVIEW_MARK
    half_y, half_x = height // 2, width // 2
    top, bottom = slice(0, half_y), slice(half_y, None)
    left, right = slice(0, half_x), slice(half_x, None)
    for colour, (rows, cols) in zip(
        colours, ((top, left), (top, right), (bottom, left), (bottom, right)), strict=True
    ):
        pixels[rows, cols] = colour
    return pixels


def write_dng(
    path: Path,
    width: int = 600,
    height: int = 400,
    *,
    preview: int | tuple[int, int] | None = None,
    orientation: int = 1,
    mark_preview: bool = False,
    make: str = "Mediamill",
    model: str = "TestCam 1",
    lens: str | None = "Mediamill 35mm F1.4",
    exposure_in_ifd0: bool = False,
    gps: tuple[float, float] | None = None,
) -> Path:
    """A DNG of :func:`scene`; ``preview`` is the embedded JPEG's long side, or its width and
    height (the scene stretched to them), or None for no preview. ``exposure_in_ifd0`` puts
    exposure, aperture, ISO and focal length in IFD 0, as TIFF/EP-style writers do, instead of
    the EXIF IFD. ``gps`` is a latitude and longitude for a GPS IFD."""
    ifd0: list[tuple[int, int, int, Any, bool]] = [
        (50706, _BYTE, 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, _BYTE, 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, _ASCII, 0, f"{make} {model}", True),  # UniqueCameraModel
        (271, _ASCII, 0, make, True),
        (272, _ASCII, 0, model, True),
        (306, _ASCII, 0, "2024:07:14 18:03:11", True),
        (274, _SHORT, 1, orientation, True),
        (50721, _SRATIONAL, 9, _rationals(_XYZ_TO_SRGB), True),  # ColorMatrix1
        (50778, _SHORT, 1, 21, True),  # CalibrationIlluminant1: D65
        (50728, _RATIONAL, 3, (1, 1, 1, 1, 1, 1), True),  # AsShotNeutral
        (_EXIF_STAND_IN, _LONG, 1, 0, True),  # becomes the EXIF IFD pointer (see _splice)
    ]
    if gps is not None:
        ifd0.append((_GPS_STAND_IN, _LONG, 1, 0, True))
    if exposure_in_ifd0:
        ifd0 += [
            (33434, _RATIONAL, 1, (1, 250), True),  # ExposureTime
            (33437, _RATIONAL, 1, (28, 10), True),  # FNumber
            (34855, _SHORT, 1, 400, True),  # ISOSpeedRatings
            (37386, _RATIONAL, 1, (35, 1), True),  # FocalLength
        ]
    raw_tags: list[tuple[int, int, int, Any, bool]] = [
        (33421, _SHORT, 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, _BYTE, 4, (0, 1, 1, 2), True),  # CFAPattern: R G / G B
        (50714, _SHORT, 1, _BLACK, True),  # BlackLevel
        (50717, _SHORT, 1, _WHITE, True),  # WhiteLevel
    ]
    mosaic = _mosaic(scene(width, height), black=_BLACK, white=_WHITE)
    _write(path, ifd0, raw_tags, mosaic, preview_in_subifd=False)
    _splice(
        path,
        width,
        height,
        preview=preview,
        page=(),
        mark=mark_preview,
        lens=lens,
        exposure=not exposure_in_ifd0,
        gps=gps,
    )
    return path


def write_nef(
    path: Path,
    width: int = 600,
    height: int = 400,
    *,
    preview: int | None = None,
    orientation: int = 1,
    mark_preview: bool = False,
    model: str = "NIKON D700",
    lens: str | None = "AF-S Nikkor 24-70mm f/2.8G",
) -> Path:
    """A NEF of :func:`scene` laid out as Nikon's uncompressed NEF: IFD 0 holds a 160 x 120
    thumbnail, the make and model; its first SubIFD the JPEG preview (``preview`` its long
    side; None: an empty one), the second the raw data, a 16-bit RGGB mosaic (TIFF/EP CFA tags).

    Nikon's maker notes (white balance, lens data, the compressed-NEF curve) are not written:
    LibRaw decodes such a file with its own defaults for the model.
    """
    ifd0: list[tuple[int, int, int, Any, bool]] = [
        (271, _ASCII, 0, "NIKON CORPORATION", True),
        (272, _ASCII, 0, model, True),
        (306, _ASCII, 0, "2024:07:14 18:03:11", True),
        (274, _SHORT, 1, orientation, True),
        (_EXIF_STAND_IN, _LONG, 1, 0, True),
    ]
    raw_tags: list[tuple[int, int, int, Any, bool]] = [
        (33421, _SHORT, 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, _BYTE, 4, (0, 1, 1, 2), True),  # CFAPattern: R G / G B
    ]
    mosaic = _mosaic(scene(width, height), black=0, white=65535)
    _write(path, ifd0, raw_tags, mosaic, preview_in_subifd=True)
    _splice(
        path,
        width,
        height,
        preview=preview,
        page=(0,),
        mark=mark_preview,
        lens=lens,
        exposure=True,
        gps=None,
    )
    return path


def _write(
    path: Path,
    ifd0: list[tuple[int, int, int, Any, bool]],
    raw_tags: list[tuple[int, int, int, Any, bool]],
    mosaic: np.ndarray,
    *,
    preview_in_subifd: bool,
) -> None:
    """IFD 0 and its SubIFDs; an 8 x 8 placeholder where the JPEG preview goes (see _splice)."""
    placeholder = np.zeros((8, 8, 3), np.uint8)
    with tifffile.TiffWriter(path) as tif:
        if preview_in_subifd:
            height, width = mosaic.shape
            thumb = _resized(scene(width, height), (160, 120))
            tif.write(thumb, photometric="rgb", subfiletype=1, subifds=2, extratags=ifd0)
            tif.write(placeholder, photometric="rgb", subfiletype=1, metadata=None)
        else:
            tif.write(placeholder, photometric="rgb", subfiletype=1, subifds=1, extratags=ifd0)
        tif.write(mosaic, photometric=32803, subfiletype=0, extratags=raw_tags, metadata=None)


def _splice(
    path: Path,
    width: int,
    height: int,
    *,
    preview: int | tuple[int, int] | None,
    page: tuple[int, ...],
    mark: bool,
    lens: str | None,
    exposure: bool,
    gps: tuple[float, float] | None,
) -> None:
    """Append the JPEG preview, the EXIF IFD and the GPS IFD, and point IFD 0 and the preview's
    IFD (IFD 0, or the SubIFD ``page`` names) at them."""
    exif = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")
    exif[0x9003] = "2024:07:14 18:03:11"
    if exposure:
        exif[0x829A] = IFDRational(1, 250)
        exif[0x829D] = IFDRational(28, 10)
        exif[0x8827] = 400
        exif[0x920A] = IFDRational(35, 1)
    if lens:
        exif[0xA434] = lens
    with path.open("r+b") as file:
        file.seek(0, 2)
        file.write(b"\x00" * (file.tell() % 2))  # IFDs start on a word boundary
        pointers = {_EXIF_STAND_IN: (_EXIF_IFD, file.tell())}
        file.write(exif.tobytes(file.tell()))
        if gps is not None:
            file.write(b"\x00" * (file.tell() % 2))
            pointers[_GPS_STAND_IN] = (_GPS_IFD, file.tell())
            file.write(_gps_ifd(*gps).tobytes(file.tell()))
        jpeg_offset, jpeg = file.tell(), b""
        if isinstance(preview, tuple):
            size = preview
        else:
            scale = (preview or 1) / max(width, height)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
        if preview is not None:
            jpeg = _jpeg(scene(width, height, mark=mark), size)
            file.write(jpeg)
    with tifffile.TiffFile(path, mode="r+") as tif:
        first = tif.pages[0]
        assert isinstance(first, tifffile.TiffPage)
        entries = {first.tags[stand_in].offset: pointer for stand_in, pointer in pointers.items()}
        slot = tifffile.TiffPages(first)[page[0]] if page else first
        assert isinstance(slot, tifffile.TiffPage)
        tags = slot.tags
        if preview is not None:
            for code, value in ((256, size[0]), (257, size[1]), (259, 7), (262, 6)):
                tags[code].overwrite(value)  # width, length, JPEG, YCbCr
            tags[273].overwrite(jpeg_offset)
            tags[279].overwrite(len(jpeg))
    with path.open("r+b") as file:
        for entry, (tag, offset) in entries.items():
            file.seek(entry)
            file.write(struct.pack("<HHII", tag, _LONG, 1, offset))


def _gps_ifd(latitude: float, longitude: float) -> TiffImagePlugin.ImageFileDirectory_v2:
    ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")
    for ref_tag, tag, value, negative, positive in (
        (1, 2, latitude, "S", "N"),
        (3, 4, longitude, "W", "E"),
    ):
        ifd[ref_tag] = negative if value < 0 else positive
        degrees = abs(value)
        whole, minutes = int(degrees), (degrees - int(degrees)) * 60
        ifd[tag] = (
            IFDRational(whole, 1),
            IFDRational(int(minutes), 1),
            IFDRational(round((minutes - int(minutes)) * 60 * 10000), 10000),
        )
    return ifd


def _jpeg(pixels: np.ndarray, size: Sequence[int]) -> bytes:
    return bytes(_image(pixels, size).jpegsave_buffer(Q=90))


def _resized(pixels: np.ndarray, size: Sequence[int]) -> np.ndarray:
    return np.asarray(_image(pixels, size).numpy(), dtype=np.uint8)


def _image(pixels: np.ndarray, size: Sequence[int]) -> pyvips.Image:
    image: pyvips.Image = pyvips.Image.new_from_array(pixels).copy(interpretation="srgb")
    return image.resize(size[0] / image.width, vscale=size[1] / image.height)


def _mosaic(pixels: np.ndarray, *, black: int, white: int) -> np.ndarray:
    """The RGGB Bayer samples a sensor would record of ``pixels`` (sRGB), in linear light."""
    srgb = pixels.astype(np.float64) / 255.0
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    values = np.rint(linear * (white - black) + black).astype(np.uint16)
    mosaic = np.empty(pixels.shape[:2], np.uint16)
    mosaic[0::2, 0::2] = values[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = values[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = values[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = values[1::2, 1::2, 2]
    return mosaic


def _rationals(values: Sequence[float]) -> list[int]:
    pairs: list[int] = []
    for value in values:
        pairs += [round(value * 10000), 10000]
    return pairs
