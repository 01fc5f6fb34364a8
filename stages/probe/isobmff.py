"""Walking ISO base media (MP4, MOV, HEIF) boxes by their headers, without reading payloads.

The probe needs two facts FFmpeg does not hand over cheaply: whether a file that failed to open
has a ``moov`` box at all (an unfinished or cut upload has not), and the video track's display
rotation, which lives in the ``tkhd`` matrix.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from typing import BinaryIO

# Containers whose children are boxes; everything else is skipped over by its size.
_CONTAINERS = {b"moov", b"trak", b"mdia"}
_MAX_BOXES = 100_000  # a hostile file of many tiny boxes must not keep the walk going


def iter_boxes(file: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """Yield (type, payload start, payload end) of the boxes in [start, end).

    Stops quietly at the first box that cannot be real (too small, or running past ``end``
    while not the last one), which is where a truncated file ends.
    """
    offset = start
    for _ in range(_MAX_BOXES):
        if offset + 8 > end:
            return
        file.seek(offset)
        header = file.read(16)
        if len(header) < 8:
            return
        size, kind = struct.unpack(">I4s", header[:8])
        payload = offset + 8
        if size == 1:  # 64-bit size follows the type
            if len(header) < 16:
                return
            size = struct.unpack(">Q", header[8:16])[0]
            payload = offset + 16
        elif size == 0:  # box runs to the end of the file
            size = end - offset
        if size < payload - offset:
            return
        yield kind, payload, min(offset + size, end)
        offset += size


def top_level_types(file: BinaryIO, size: int) -> list[bytes]:
    """The types of the top-level boxes, in order."""
    return [kind for kind, _, _ in iter_boxes(file, 0, size)]


def video_rotation(file: BinaryIO, size: int) -> int:
    """Clockwise degrees (0, 90, 180, 270) to turn the first video track for display."""
    for kind, start, end in iter_boxes(file, 0, size):
        if kind != b"moov":
            continue
        for trak_kind, trak_start, trak_end in iter_boxes(file, start, end):
            if trak_kind == b"trak" and _handler(file, trak_start, trak_end) == b"vide":
                return _tkhd_rotation(file, trak_start, trak_end)
        return 0
    return 0


def _handler(file: BinaryIO, start: int, end: int) -> bytes | None:
    for kind, mdia_start, mdia_end in iter_boxes(file, start, end):
        if kind != b"mdia":
            continue
        for child, payload, _ in iter_boxes(file, mdia_start, mdia_end):
            if child == b"hdlr":
                file.seek(payload + 8)  # version/flags, pre_defined
                return file.read(4)
    return None


def _tkhd_rotation(file: BinaryIO, start: int, end: int) -> int:
    for kind, payload, box_end in iter_boxes(file, start, end):
        if kind != b"tkhd":
            continue
        file.seek(payload)
        version = file.read(1)
        # Matrix offset: version/flags + times/ids (20 or 32) + reserved/layer/group/volume (16).
        matrix_at = payload + 4 + (32 if version == b"\x01" else 20) + 16
        if matrix_at + 16 > box_end:
            return 0
        file.seek(matrix_at)
        a, b, _, c = struct.unpack(">iiii", file.read(16))
        if a == 0 and b == 0 and c == 0:
            return 0
        # The matrix maps stored to displayed pixels: [a b; c d] is a rotation by atan2(b, a).
        return round(math.degrees(math.atan2(b, a)) / 90) % 4 * 90
    return 0
