"""The appended video's bytes: placed from the XMP's claim, checked, copied to a file of its own.

The copy goes to the job's directory in the worker's spool, a chunk at a time, never whole in
memory: a 4K motion photo carries 10-20 MB of video. Everything wrong with the claim or the
bytes is the upload's (:class:`VideoUnusable`); failing to read the spooled original or to write
the copy is our disk's, a ``TransientError``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.contract import BadMediaError, Job, MediaKind, TransientError
from stages.probe.motion import EmbeddedVideo
from stages.probe.sniff import Sniffed, sniff
from stages.probe.stage import probe_video

_CHUNK = 1024 * 1024
_MIN_VIDEO = 32  # bytes: less than an ftyp box and a moov header cannot be a video


class VideoUnusable(Exception):
    """The photo's embedded video is absent, misplaced or not a playable video (a warning)."""


@dataclass(frozen=True, slots=True)
class Extracted:
    """The copied video, what it was sniffed as and the probe's facts of it."""

    path: Path
    sniffed: Sniffed
    facts: dict[str, Any]


def place(declared: EmbeddedVideo, file_size: int) -> tuple[int, int]:
    """Where the video lies: its first byte and its length, or :class:`VideoUnusable`."""
    start = file_size - declared.offset_from_end
    if start <= 0:
        raise VideoUnusable(
            f"the XMP places it {declared.offset_from_end} bytes before the end of a "
            f"{file_size}-byte file, past the start (the file was cut short, or the XMP is wrong)"
        )
    length = declared.offset_from_end if declared.length is None else declared.length
    if start + length > file_size:
        raise VideoUnusable(
            f"the XMP gives it {length} bytes from byte {start}, past the end of the "
            f"{file_size}-byte file"
        )
    if length < _MIN_VIDEO:
        raise VideoUnusable(f"the XMP gives it only {length} bytes")
    return start, length


def extract(job: Job, declared: EmbeddedVideo, target: Path, *, max_seconds: float) -> Extracted:
    """Copy the declared video to ``target`` and probe it; on any failure ``target`` is gone.

    A clip longer than ``max_seconds`` is refused before anything decodes it: phones record a
    few seconds, and an hour of video hidden behind a photo must not hold the still back.
    """
    start, length = place(declared, job.original.stat().st_size)
    try:
        _copy(job, start, length, target)
        try:
            sniffed = sniff(target)
        except BadMediaError as error:
            raise VideoUnusable(f"its bytes are not a video ({error})") from error
        if sniffed.kind is not MediaKind.VIDEO:
            raise VideoUnusable(f"its bytes are a {sniffed.label} image, not a video")
        try:
            facts = probe_video(target, sniffed)
        except BadMediaError as error:
            raise VideoUnusable(str(error)) from error
        if not facts.get("pixel_format"):
            # FFmpeg finds the pixel format by decoding the first frames: none decoded.
            raise VideoUnusable("no frame of it decodes")
        duration = facts.get("duration")
        if duration is not None and duration > max_seconds:
            raise VideoUnusable(
                f"it lasts {duration:.1f} s, more than the {max_seconds:g} s a motion photo's "
                "clip may (the stage's max_seconds)"
            )
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return Extracted(target, sniffed, facts)


def _copy(job: Job, start: int, length: int, target: Path) -> None:
    try:
        with job.original.open("rb") as source, target.open("wb") as out:
            source.seek(start)
            left = length
            while left:
                job.check_cancelled()
                chunk = source.read(min(_CHUNK, left))
                if not chunk:  # the spooled original shrank under us: ours, not the upload's
                    raise TransientError("the spooled original ended before its stated size")
                out.write(chunk)
                left -= len(chunk)
    except OSError as error:
        raise TransientError(
            f"could not copy the embedded video: {os.strerror(error.errno or 0)}"
        ) from error
