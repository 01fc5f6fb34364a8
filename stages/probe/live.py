"""Live Photos: the content identifier an iPhone writes into both halves of one capture.

An iPhone saves a Live Photo as a still (HEIC or JPEG) and a short MOV that share a UUID: in the
still, tag 0x0011 (``ContentIdentifier``) of Apple's maker note; in the MOV, the QuickTime
metadata key ``com.apple.quicktime.content.identifier`` (an ``mdta`` key in ``moov/meta``, which
FFmpeg hands over as container metadata under that name).

Apple's maker note is a TIFF IFD behind a 14-byte header (``Apple iOS\\0``, a version, then the
byte order, ``MM``) whose offsets count from the maker note's first byte. Pillow parses it
(bounds-checked: a bad offset or count drops the entry) as it parses the EXIF around it; a
maker note that is not Apple's, or is damaged, is simply no identifier.
"""

from __future__ import annotations

import io
import uuid
import warnings
from collections.abc import Mapping
from typing import Any

from PIL import Image, TiffImagePlugin

MOV_KEY = "com.apple.quicktime.content.identifier"
_EXIF_IFD = 0x8769
_MAKER_NOTE = 0x927C
_APPLE_HEADER = b"Apple iOS\0"
_APPLE_IFD = 14  # header (10), version (2), byte order (2)
_CONTENT_IDENTIFIER = 0x0011
_MAX_MAKER_NOTE = 64 * 1024  # iPhones write about 1-2 KiB; EXIF itself is at most 64 KiB

# Pillow warns on each damaged entry it skips; for uploads that is routine (as in the EXIF
# reader of the photo stage, which the probe does not import).
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")


def photo_identifier(exif: bytes | None) -> str | None:
    """The ContentIdentifier of an EXIF block's Apple maker note, or None."""
    if not exif:
        return None
    try:
        block = Image.Exif()
        block.load(bytes(exif))
        note = block.get_ifd(_EXIF_IFD).get(_MAKER_NOTE)
    except Exception:  # a malformed EXIF block is no identifier, never a failed photo
        return None
    if not isinstance(note, bytes) or not note.startswith(_APPLE_HEADER):
        return None
    return _from_apple_note(note[:_MAX_MAKER_NOTE])


def video_identifier(metadata: Mapping[str, str]) -> str | None:
    """The content identifier of a MOV's container metadata, or None."""
    return canonical(metadata.get(MOV_KEY))


def canonical(value: Any) -> str | None:
    """The identifier as a UUID in Apple's own spelling (upper case), or None if it is not one.

    Both halves come from one device, but the value becomes part of a table key: anything but a
    UUID is refused rather than trusted.
    """
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    text = value.strip().strip("\0").strip()
    if len(text) != 36:  # the hyphenated form only: no braces, URNs or bare hex
        return None
    try:
        return str(uuid.UUID(text)).upper()
    except ValueError:
        return None


def _from_apple_note(note: bytes) -> str | None:
    order = note[12:14]
    if order not in (b"MM", b"II"):
        return None
    directory = TiffImagePlugin.ImageFileDirectory_v2(prefix=order)
    stream = io.BytesIO(note)
    stream.seek(_APPLE_IFD)
    try:
        directory.load(stream)
        value = directory.get(_CONTENT_IDENTIFIER)
    except Exception:  # truncated or self-contradictory: Pillow may raise as well as warn
        return None
    return canonical(value)
