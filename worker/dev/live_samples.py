"""Live Photos made as iPhones make them, for ``mediamill demo`` and for tests.

The still is a HEIC (pillow-heif) or a JPEG (pyvips) whose EXIF holds Apple's maker note with
the capture's ContentIdentifier; the clip is a MOV whose QuickTime ``mdta`` key
``com.apple.quicktime.content.identifier`` holds the same UUID (FFmpeg's mov muxer writes mdta
keys with ``movflags=use_metadata_tags``, in ``moov/udta/meta``; an iPhone puts that ``meta`` box
straight in ``moov``, so it is moved there). The maker note is packed here, byte by byte, as
iPhones lay it out, independently of the reader in :mod:`stages.probe.live`.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pillow_heif
import pyvips

from stages.probe.live import MOV_KEY
from worker.dev.samples import camera_exif, picture, write_video

_HEADER = b"Apple iOS\0" + b"\0\x01"  # signature, maker note version 1
_EXIF_IFD, _MAKER_NOTE = 0x8769, 0x927C
_SLONG, _ASCII = 9, 2


def apple_maker_note(identifier: str, *, byte_order: bytes = b"MM") -> bytes:
    """Apple's maker note: the header, then an IFD (offsets from the note's first byte) with
    the maker note version (0x0001) and the ContentIdentifier (0x0011), NUL-terminated."""
    end = ">" if byte_order == b"MM" else "<"
    text = identifier.encode("ascii") + b"\0"
    entries = [(0x0001, _SLONG, 1, struct.pack(f"{end}i", 14)), (0x0011, _ASCII, len(text), text)]
    data_start = len(_HEADER) + 2 + 2 + 12 * len(entries) + 4
    table = struct.pack(f"{end}H", len(entries))
    data = b""
    for tag, kind, count, value in entries:
        if len(value) <= 4:
            table += struct.pack(f"{end}HHI", tag, kind, count) + value.ljust(4, b"\0")
        else:
            table += struct.pack(f"{end}HHII", tag, kind, count, data_start + len(data))
            data += value
    return _HEADER + byte_order + table + struct.pack(f"{end}I", 0) + data


def live_photo_exif(identifier: str | None, *, maker_note: bytes | None = None) -> bytes:
    """An iPhone's EXIF block with the maker note for ``identifier`` (or ``maker_note`` as is)."""
    exif = camera_exif()
    note = maker_note if maker_note is not None else apple_maker_note(identifier or "")
    exif[_EXIF_IFD] = {**exif[_EXIF_IFD], _MAKER_NOTE: note}
    return exif.tobytes()


def write_live_still(
    path: Path,
    identifier: str | None,
    *,
    heic: bool = True,
    width: int = 320,
    height: int = 240,
    maker_note: bytes | None = None,
) -> Path:
    """The still of a Live Photo: a HEIC through pillow-heif, or a JPEG through pyvips."""
    exif = live_photo_exif(identifier, maker_note=maker_note)
    if heic:
        heif: Any = pillow_heif.from_pillow(picture(width, height))
        heif.save(path, quality=60, exif=exif)
        return path
    still = pyvips.Image.new_from_memory(
        picture(width, height).tobytes(), width, height, 3, "uchar"
    ).copy()
    still.set_type(pyvips.GValue.blob_type, "exif-data", exif)
    still.jpegsave(str(path), Q=85)
    return path


def write_live_clip(
    path: Path, identifier: str, *, width: int = 320, height: int = 240, seconds: float = 1.5
) -> Path:
    """The MOV of a Live Photo, the identifier in an ``mdta`` key as an iPhone writes it."""
    write_video(
        path,
        container="mov",
        codec="hevc",
        width=width,
        height=height,
        seconds=seconds,
        fps=30,
        tags={MOV_KEY: identifier, "com.apple.quicktime.make": "Apple"},
        metadata_keys=True,
    )
    path.write_bytes(_meta_into_moov(path.read_bytes()))
    return path


def _meta_into_moov(data: bytes) -> bytes:
    """``moov/udta/meta`` moved to ``moov/meta``. FFmpeg writes ``moov`` after ``mdat``, so no
    chunk offset changes; ``udta`` goes when nothing else is left in it."""
    boxes = _boxes(data, 0, len(data))
    [(moov_at, moov_end)] = [(at, end) for kind, at, end in boxes if kind == b"moov"]
    children = _boxes(data, moov_at + 8, moov_end)
    assert all(kind != b"mdat" for kind, _, _ in _boxes(data, moov_end, len(data)))
    body = b""
    meta = b""
    for kind, at, end in children:
        if kind != b"udta":
            body += data[at:end]
            continue
        rest = b""
        for inner, inner_at, inner_end in _boxes(data, at + 8, end):
            if inner == b"meta":
                # FFmpeg's has version and flags (an ISO full box); QuickTime's, iPhones', none.
                children_of_meta = data[inner_at + 12 : inner_end]
                meta = struct.pack(">I4s", 8 + len(children_of_meta), b"meta") + children_of_meta
            else:
                rest += data[inner_at:inner_end]
        if rest:
            body += struct.pack(">I4s", 8 + len(rest), b"udta") + rest
    assert meta, "the muxer wrote no metadata keys"
    moov = body + meta
    return data[:moov_at] + struct.pack(">I4s", 8 + len(moov), b"moov") + moov + data[moov_end:]


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    found = []
    while start + 8 <= end:
        size, kind = struct.unpack(">I4s", data[start : start + 8])
        if size < 8:
            raise ValueError(f"box {kind!r} at {start} has size {size}")
        found.append((kind, start, start + size))
        start += size
    return found


def write_live_photo(
    folder: Path, identifier: str, *, heic: bool = True, stem: str = "IMG_0001"
) -> tuple[Path, Path]:
    """A Live Photo pair in ``folder``: ``IMG_0001.HEIC`` (or ``.JPG``) and ``IMG_0001.MOV``."""
    still = write_live_still(folder / f"{stem}.{'HEIC' if heic else 'JPG'}", identifier, heic=heic)
    return still, write_live_clip(folder / f"{stem}.MOV", identifier)
