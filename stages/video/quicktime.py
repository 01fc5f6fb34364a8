"""Container tags phones write into MP4/MOV files: ISO 6709 positions and creation times.

FFmpeg hands both over as container metadata: ``location`` (the ``©xyz`` udta atom) or
``com.apple.quicktime.location.ISO6709`` (mdta keys, iPhones), and ``creation_time`` or
``com.apple.quicktime.creationdate``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

_LOCATION_KEYS = ("com.apple.quicktime.location.ISO6709", "location", "location-eng")
_CREATION_KEYS = ("com.apple.quicktime.creationdate", "creation_time")
# ±DD.D, ±DDMM.M or ±DDMMSS.S latitude, the same with three degree digits for longitude, then
# an optional altitude in metres; a trailing "/" or a CRS suffix may follow.
_ISO6709 = re.compile(
    r"^(?P<lat>[+-]\d{2}(?:\d{2}){0,2}(?:\.\d+)?)"
    r"(?P<lon>[+-]\d{3}(?:\d{2}){0,2}(?:\.\d+)?)"
    r"(?P<alt>[+-]\d+(?:\.\d+)?)?"
)
_EARLIEST_YEAR = 1971  # zeroed MP4 clocks read as 1904 or 1970: not a real recording time


def location(metadata: Mapping[str, str]) -> dict[str, float] | None:
    """``{"latitude", "longitude"[, "altitude"]}`` from the first position tag that parses."""
    for key in _LOCATION_KEYS:
        value = metadata.get(key)
        if value:
            found = parse_iso6709(value)
            if found is not None:
                return found
    return None


def parse_iso6709(text: str) -> dict[str, float] | None:
    """An ISO 6709 point such as ``+37.3349-122.0090+010.000/``; None when it is not one."""
    match = _ISO6709.match(text.strip())
    if match is None:
        return None
    latitude = _degrees(match["lat"], 2)
    longitude = _degrees(match["lon"], 3)
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    point = {"latitude": round(latitude, 6), "longitude": round(longitude, 6)}
    if match["alt"]:
        point["altitude"] = round(float(match["alt"]), 3)
    return point


def creation_time(metadata: Mapping[str, str]) -> str | None:
    """When the recording was made, as ISO 8601 UTC (``2024-05-01T10:00:00Z``)."""
    for key in _CREATION_KEYS:
        value = metadata.get(key)
        if not value:
            continue
        try:
            when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            continue
        if when.tzinfo is None:  # MP4 times are UTC by definition
            when = when.replace(tzinfo=UTC)
        if when.year >= _EARLIEST_YEAR:
            return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return None


def _degrees(value: str, degree_digits: int) -> float:
    sign = -1.0 if value[0] == "-" else 1.0
    whole, _, fraction = value[1:].partition(".")
    parts = [
        whole[:degree_digits],
        whole[degree_digits : degree_digits + 2],
        whole[degree_digits + 2 :],
    ]
    # The fraction belongs to the last unit written (degrees, minutes or seconds).
    units = [float(part) for part in parts if part]
    units[-1] += float(f"0.{fraction}") if fraction else 0.0
    scale = (1.0, 60.0, 3600.0)
    return sign * sum(unit / scale[index] for index, unit in enumerate(units))
