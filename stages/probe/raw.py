"""Camera RAW files (DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2) opened through LibRaw (rawpy).

Opening reads the header only: sizes, the orientation flag and the embedded previews' places;
no raw data is unpacked. The probe reports from here and the thumbnail stage decodes with the
same library (:mod:`stages.photo.raw`), so a file the probe accepts is one LibRaw can read.

What LibRaw refuses is blamed on the file only when our own read of it succeeds: LibRaw says
"input/output error" both for a file that ends early and for a disk that failed under it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rawpy

from mediamill_core.keys import RAW_TYPES
from stages.contract import BadMediaError, TransientError

RAW_FORMATS = frozenset(RAW_TYPES)  # dng cr2 cr3 nef arw raf orf rw2
# LibRaw's flip (dcraw's bits: 1 mirror, 2 upside down, 4 transposed) as the EXIF orientation
# the rest of the pipeline speaks; dcraw maps EXIF to flip through "50132467".
FLIP_TO_ORIENTATION = {0: 1, 1: 2, 3: 3, 2: 4, 4: 5, 6: 6, 7: 7, 5: 8}
_READ_CHUNK = 1 << 20
# LibRaw's error classes turned into reasons a person can act on ("{}" is the format's label).
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (
        rawpy.LibRawFileUnsupportedError,
        "unsupported or corrupt {}: LibRaw does not know this camera or variant, "
        "or the header is damaged",
    ),
    (rawpy.LibRawDataError, "corrupt {}: its raw data is damaged"),
    (rawpy.LibRawIOError, "truncated {}: the file ends before its data does"),
    (rawpy.LibRawTooBigError, "unsupported {}: its sizes are beyond what LibRaw decodes"),
    (rawpy.LibRawBadCropError, "corrupt {}: its crop area lies outside the picture"),
)


@dataclass(frozen=True, slots=True)
class RawFacts:
    """What a RAW file's header says; ``width`` and ``height`` as stored, before the flip."""

    width: int
    height: int
    raw_width: int  # the sensor area LibRaw unpacks, margins included
    raw_height: int
    orientation: int  # 1-8, as in EXIF
    bit_depth: int

    @property
    def quarter_turned(self) -> bool:
        return self.orientation in (5, 6, 7, 8)

    @property
    def displayed(self) -> tuple[int, int]:
        """Width and height once the flip is applied."""
        if self.quarter_turned:
            return self.height, self.width
        return self.width, self.height


@contextmanager
def open_raw(path: Path, label: str) -> Iterator[Any]:
    """The file opened by LibRaw (header only), closed on exit; refusals as :func:`raw_failure`."""
    try:
        raw = rawpy.imread(str(path))
    except (rawpy.LibRawError, OSError) as error:
        raise raw_failure(error, path, label, doing=f"reading the {label}") from error
    try:
        yield raw
    finally:
        raw.close()


def raw_facts(raw: Any) -> RawFacts:
    """Sizes, orientation and sensor bit depth of an opened file."""
    sizes = raw.sizes
    white = int(raw.white_level or 0)
    return RawFacts(
        width=int(sizes.width),
        height=int(sizes.height),
        raw_width=int(sizes.raw_width),
        raw_height=int(sizes.raw_height),
        orientation=FLIP_TO_ORIENTATION.get(int(sizes.flip), 1),
        bit_depth=white.bit_length() if white > 0 else 16,
    )


def probe_raw(path: Path, label: str) -> dict[str, Any]:
    """The probe's facts for a RAW file: stored size and the orientation to display it in."""
    with open_raw(path, label) as raw:
        facts = raw_facts(raw)
    if facts.width < 1 or facts.height < 1:
        raise BadMediaError(f"corrupt or truncated {label}: the header gives no picture size")
    return {
        "width": facts.width,
        "height": facts.height,
        "pages": 1,
        "animated": False,
        "orientation": facts.orientation,
    }


def raw_failure(
    error: Exception, path: Path, label: str, *, doing: str
) -> BadMediaError | TransientError:
    """What LibRaw failing while ``doing`` something with the file at ``path`` means.

    Memory LibRaw could not get, or a file we cannot read back ourselves, is this machine's
    trouble and retried; anything else is about the file's bytes.
    """
    if isinstance(error, rawpy.LibRawUnsufficientMemoryError | MemoryError):
        return TransientError(f"{doing} failed: out of memory")
    unreadable = _own_read_failure(path)
    if unreadable is not None:
        return TransientError(f"{doing} failed: {unreadable}")
    reason = next((text for kind, text in _REASONS if isinstance(error, kind)), None)
    if reason is None:
        return BadMediaError(f"corrupt or truncated {label}: {_libraw_words(error)}")
    return BadMediaError(reason.format(label))


def _own_read_failure(path: Path) -> str | None:
    """Why reading our own copy of the upload fails, None when it reads to the end."""
    try:
        with path.open("rb") as file:
            while file.read(_READ_CHUNK):
                pass
    except OSError as error:
        return error.strerror or type(error).__name__
    return None


def _libraw_words(error: Exception) -> str:
    text = str(error).strip()
    return text[:160] if text else "LibRaw could not decode it"
