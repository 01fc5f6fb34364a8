"""Uploads gone wrong, for the tests and `mediamill demo --include-broken`: cut, damaged, fake."""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path
from typing import Literal

from stages.probe.isobmff import iter_boxes
from worker.dev.samples import write_jpeg, write_video


def write_broken_jpeg(path: Path, keep_bytes: int = 200) -> Path:
    """A JPEG cut after ``keep_bytes`` bytes, as an interrupted upload leaves it."""
    whole = write_jpeg(path.with_suffix(".whole.jpg"), 320, 240)
    path.write_bytes(whole.read_bytes()[:keep_bytes])
    whole.unlink()
    return path


BrokenVideo = Literal["empty", "no-moov", "noise", "damaged"]


def write_broken_video(path: Path, kind: BrokenVideo) -> Path:
    """A video upload gone wrong: ``empty`` (zero bytes), ``no-moov`` (an MP4 cut before its
    index, as an interrupted recording leaves it), ``noise`` (random bytes) or ``damaged``
    (an HEVC MP4 whose middle packets were overwritten: the rest still plays)."""
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "noise":
        path.write_bytes(random.Random(7).randbytes(64 * 1024))
    else:
        # HEVC, as phones record: not web-safe, so the stage decodes every packet of it.
        whole = write_video(path.with_suffix(".whole.mp4"), codec="hevc", seconds=3.0, audio=False)
        data = bytearray(whole.read_bytes())
        whole.unlink()
        with io.BytesIO(data) as file:
            start, end = next((s, e) for k, s, e in iter_boxes(file, 0, len(data)) if k == b"mdat")
        if kind == "no-moov":  # the moov box comes after the media data: cut inside it
            data = data[: (start + end) // 2]
        else:
            noise = random.Random(7)
            middle = start + (end - start) * 2 // 5
            for offset in range(middle, start + (end - start) * 3 // 5, 512):
                data[offset : offset + 64] = noise.randbytes(64)
        path.write_bytes(bytes(data))
    return path


def write_damaged_jpeg(path: Path, width: int = 1200, height: int = 800) -> Path:
    """A JPEG cut off two thirds of the way through its picture data: viewers show the top."""
    whole = write_jpeg(path.with_suffix(".whole.jpg"), width, height)
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    whole.unlink()
    return path


def write_png_bomb(path: Path, width: int = 50_000, height: int = 50_000) -> Path:
    """A decompression bomb's header: a PNG that claims ``width`` x ``height`` in a few bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    pixels = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )
    return path


def write_fake_jpeg(path: Path) -> Path:
    """An HTML page named like a photo, as a hostile or confused client uploads."""
    path.write_text("<!doctype html><html><body><script>alert(1)</script></body></html>\n")
    return path
