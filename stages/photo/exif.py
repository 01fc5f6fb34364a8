"""Camera facts and GPS position from a photo's EXIF block, normalised and never fatal.

Pillow's EXIF reader does the TIFF parsing (IFDs, byte order, rationals); this module picks the
fields an album shows and makes them plain JSON: numbers as numbers, dates as ISO 8601. Phones
and editors write every kind of nonsense here (empty strings, 0000:00:00 dates, zero
denominators, NUL padding), so each field is read on its own and a bad one is only left out.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_MAKE, _MODEL = 0x010F, 0x0110
_DATETIME = 0x0132
_DATETIME_ORIGINAL, _DATETIME_DIGITIZED = 0x9003, 0x9004
_OFFSET_ORIGINAL, _OFFSET = 0x9011, 0x9010
_SUBSEC_ORIGINAL = 0x9291
_EXPOSURE_TIME, _F_NUMBER, _ISO, _FOCAL_LENGTH = 0x829A, 0x829D, 0x8827, 0x920A
_FOCAL_35MM, _LENS_MAKE, _LENS_MODEL = 0xA405, 0xA433, 0xA434
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4
_GPS_ALT_REF, _GPS_ALT = 5, 6

_DATE = re.compile(r"^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET_TEXT = re.compile(r"^[+-](?:0\d|1[0-4]):[0-5]\d$")
_TEXT_LIMIT = 128

# Pillow warns on every malformed EXIF block it reads around; for uploads that is routine, and
# what could be read is used either way.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")


@dataclass(slots=True)
class PhotoFacts:
    """What the EXIF block said; ``location`` is owner-only, the rest is shown with the item."""

    taken_at: str | None = None
    camera: dict[str, Any] = field(default_factory=dict)
    location: dict[str, float] | None = None


def read_exif(blob: bytes | None) -> PhotoFacts:
    """Facts from a raw EXIF block (with or without the ``Exif\\0\\0`` prefix); {} if unreadable."""
    facts = PhotoFacts()
    if not blob:
        return facts
    try:
        exif = Image.Exif()
        exif.load(bytes(blob))
        details = _ifd(exif, _EXIF_IFD)
        gps = _ifd(exif, _GPS_IFD)
    except Exception:  # any malformed block means "no EXIF", never a failed photo
        return facts
    camera = facts.camera
    _put(camera, "make", lambda: _text(exif.get(_MAKE)))
    _put(camera, "model", lambda: _text(exif.get(_MODEL)))
    _put(camera, "lens", lambda: _text(details.get(_LENS_MODEL)))
    _put(camera, "lens_make", lambda: _text(details.get(_LENS_MAKE)))
    _put(camera, "exposure_time", lambda: _positive(details.get(_EXPOSURE_TIME), digits=6))
    _put(camera, "f_number", lambda: _positive(details.get(_F_NUMBER), digits=2))
    _put(camera, "iso", lambda: _iso(details.get(_ISO)))
    _put(camera, "focal_length", lambda: _positive(details.get(_FOCAL_LENGTH), digits=2))
    _put(camera, "focal_length_35mm", lambda: _positive(details.get(_FOCAL_35MM), digits=0))
    try:
        facts.taken_at = _taken_at(exif, details)
    except Exception:  # a date too odd to read is no date
        facts.taken_at = None
    try:
        facts.location = _location(gps)
    except Exception:
        facts.location = None
    return facts


def _ifd(exif: Image.Exif, tag: int) -> dict[int, Any]:
    try:
        return dict(exif.get_ifd(tag))
    except Exception:  # a broken sub-IFD only loses its own fields
        return {}


def _put(target: dict[str, Any], key: str, read: Callable[[], Any]) -> None:
    try:
        value = read()
    except Exception:  # one odd field must not cost the others
        return
    if value is not None:
        target[key] = value


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    cleaned = "".join(ch for ch in value.replace("\x00", " ") if ch.isprintable()).strip()
    return cleaned[:_TEXT_LIMIT] or None


def _number(value: Any) -> float | None:
    if isinstance(value, tuple | list):
        value = value[0] if value else None
    if value is None or isinstance(value, str | bytes):
        return None
    number = float(value)  # IFDRational, int or float
    return number if math.isfinite(number) else None


def _positive(value: Any, *, digits: int) -> float | int | None:
    number = _number(value)
    if number is None or number <= 0:
        return None
    rounded = round(number, digits)
    return int(rounded) if digits == 0 else rounded


def _iso(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and 0 < number < 10_000_000 else None


def _taken_at(exif: Image.Exif, details: dict[int, Any]) -> str | None:
    """ISO 8601 local time of capture, with its UTC offset when the camera recorded one."""
    for date_tag, offset_tag, source in (
        (_DATETIME_ORIGINAL, _OFFSET_ORIGINAL, details),
        (_DATETIME_DIGITIZED, _OFFSET_ORIGINAL, details),
        (_DATETIME, _OFFSET, exif),
    ):
        text = _text(source.get(date_tag))
        match = _DATE.match(text or "")
        if not match:
            continue
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        if not (1800 <= year <= 2200 and 1 <= month <= 12 and 1 <= day <= 31):
            continue
        if hour > 23 or minute > 59 or second > 60:
            continue
        stamp = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{min(second, 59):02d}"
        subsec = _text(details.get(_SUBSEC_ORIGINAL)) if date_tag == _DATETIME_ORIGINAL else None
        if subsec and subsec.isdigit():
            stamp += "." + subsec[:3].ljust(3, "0")
        offset = _text(details.get(offset_tag)) or _text(details.get(_OFFSET))
        if offset and _OFFSET_TEXT.match(offset):
            stamp += "Z" if offset in ("+00:00", "-00:00") else offset
        return stamp
    return None


def _location(gps: dict[int, Any]) -> dict[str, float] | None:
    latitude = _coordinate(gps.get(_GPS_LAT), gps.get(_GPS_LAT_REF), "S", 90)
    longitude = _coordinate(gps.get(_GPS_LON), gps.get(_GPS_LON_REF), "W", 180)
    if latitude is None or longitude is None:
        return None
    location = {"latitude": latitude, "longitude": longitude}
    altitude = _number(gps.get(_GPS_ALT))
    if altitude is not None and abs(altitude) < 100_000:
        below = gps.get(_GPS_ALT_REF) in (1, b"\x01")
        location["altitude"] = round(-altitude if below else altitude, 2)
    return location


def _coordinate(value: Any, ref: Any, negative: str, limit: float) -> float | None:
    if not isinstance(value, tuple | list) or not value:
        return None
    parts = [float(part) for part in value[:3]]
    if not all(math.isfinite(part) and part >= 0 for part in parts):
        return None
    degrees: float = sum(part / 60**index for index, part in enumerate(parts))
    if degrees > limit:
        return None
    reference = _text(ref) or ""
    return round(-degrees if reference.upper().startswith(negative) else degrees, 7)
