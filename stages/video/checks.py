"""The check a video we made passes before anything publishes it: it is what it claims.

It opens the file, finds a video stream of the claimed size whose first packet is a keyframe
and whose first frame decodes, and counts its packets and measures its duration against what
the caller expected. It is cheap on purpose: the packets are demuxed and counted, only the
first frame is decoded: 65 ms of CPU for a 30 s 720p MP4, a hundredth of decoding it all.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
from av.container import InputContainer

from stages.contract import RenditionInvalid
from stages.video.output import error_reason


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How far a measured frame count or duration may be from the expected one.

    The larger of ``frames`` frames and ``share`` of the expected value. Two frames absorb what
    happens at the ends of a stream: the fps filter rounds its first and last slot, and a
    container may not store the last frame's duration (it is then taken as one frame period).
    One per cent absorbs what grows with the length: the fps filter's choice among uneven
    (variable-rate) frames, and timestamps rounded to a coarser clock (Matroska's 1 ms). A
    truncated or half-written file misses by far more than either.
    """

    frames: int = 2
    share: float = 0.01

    def frames_allowed(self, expected: int) -> float:
        return max(self.frames, self.share * expected)

    def seconds_allowed(self, expected: float, frame_period: float) -> float:
        return max(self.frames * frame_period, self.share * expected)


DEFAULT_TOLERANCE = Tolerance()
_FALLBACK_PERIOD = 1 / 30  # seconds a frame lasts when the stream states no rate
# Packets within which the first frame must come out: H.264 and HEVC hold back at most 16
# for reordering; a decoder that answers only later skipped a keyframe it could not read.
_FIRST_FRAME_WITHIN = 32


class Span:
    """The earliest start and the latest end, in seconds, of the packets or frames added."""

    __slots__ = ("end", "start")

    def __init__(self) -> None:
        self.start: float | None = None
        self.end: float | None = None

    def add(self, start: float, length: float) -> None:
        self.start = start if self.start is None else min(self.start, start)
        end = start + max(length, 0.0)
        self.end = end if self.end is None else max(self.end, end)

    def add_packet(self, packet: av.Packet[Any], frame_period: float) -> None:
        """A packet's presentation interval; ``frame_period`` when it states no duration."""
        if packet.pts is None or packet.time_base is None:
            return
        length = packet.duration * packet.time_base if packet.duration else frame_period
        self.add(float(packet.pts * packet.time_base), float(length))

    @property
    def seconds(self) -> float:
        return self.end - self.start if self.start is not None and self.end is not None else 0.0


def frame_period(rate: Fraction | None) -> float:
    """Seconds one frame lasts at ``rate``, or a common rate's when the stream states none."""
    return float(1 / rate) if rate else _FALLBACK_PERIOD


@dataclass(frozen=True, slots=True)
class CheckedVideo:
    """What the check measured."""

    width: int
    height: int
    codec: str
    frames: int  # video packets: one frame each
    duration: float  # seconds the video stream lasts: its first frame's start to its last's end
    frame_period: float  # seconds, from the video stream's average rate


def verify_video(
    path: Path,
    *,
    duration: float | None = None,
    frames: int | None = None,
    width: int | None = None,
    height: int | None = None,
    tolerance: Tolerance = DEFAULT_TOLERANCE,
) -> CheckedVideo:
    """Measure the video at ``path`` and hold it to the claims given; ``RenditionInvalid`` if not.

    ``duration`` (seconds the video stream lasts) and ``frames`` (video frames) must match
    within ``tolerance``; ``width`` and ``height`` exactly.
    """
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            checked = _measure(container, path.name)
    except av.error.FFmpegError as error:
        reason = error_reason(error)
        raise RenditionInvalid(f"{path.name} is not a readable video: {reason}") from error
    if (width is not None and checked.width != width) or (
        height is not None and checked.height != height
    ):
        claimed = f"{width or checked.width}x{height or checked.height}"
        raise RenditionInvalid(f"{path.name} is {checked.width}x{checked.height}, not {claimed}")
    if frames is not None and abs(checked.frames - frames) > tolerance.frames_allowed(frames):
        raise RenditionInvalid(
            f"{path.name} has {checked.frames} video frames, expected {frames}"
            f" (within {tolerance.frames_allowed(frames):g})"
        )
    if duration is not None:
        allowed = tolerance.seconds_allowed(duration, checked.frame_period)
        if abs(checked.duration - duration) > allowed:
            raise RenditionInvalid(
                f"{path.name} lasts {checked.duration:.3f} s, expected {duration:.3f} s"
                f" (within {allowed:.3f} s)"
            )
    return checked


def _measure(container: InputContainer, name: str) -> CheckedVideo:
    if not container.streams.video:
        raise RenditionInvalid(f"{name} has no video stream")
    video = container.streams.video[0]
    period = frame_period(video.average_rate)
    span = Span()
    count, last_dts, decoded = 0, None, False
    for packet in container.demux(video):
        if not packet.size:  # the demuxer's end-of-stream marker
            continue
        if count == 0 and not packet.is_keyframe:
            raise RenditionInvalid(f"{name} does not start with a keyframe")
        if packet.dts is not None:
            if last_dts is not None and packet.dts <= last_dts:
                raise RenditionInvalid(f"{name}: video timestamps go back at packet {count + 1}")
            last_dts = packet.dts
        count += 1
        span.add_packet(packet, period)
        if not decoded:
            if count > _FIRST_FRAME_WITHIN:
                raise RenditionInvalid(f"{name}: its first frame does not decode")
            decoded = _decodes(video.codec_context, packet, name)
    if count == 0:
        raise RenditionInvalid(f"{name} has a video stream without a frame")
    if not decoded and not _decodes(video.codec_context, None, name):
        raise RenditionInvalid(f"{name}: its first frame does not decode")
    return CheckedVideo(
        width=int(video.width),
        height=int(video.height),
        codec=video.codec_context.codec.canonical_name,
        frames=count,
        duration=round(span.seconds, 3),
        frame_period=period,
    )


def _decodes(decoder: Any, packet: av.Packet[Any] | None, name: str) -> bool:
    """Whether a frame came out (a decoder with B-frames answers only after a few packets)."""
    try:
        return bool(decoder.decode(packet))
    except av.error.FFmpegError as error:
        raise RenditionInvalid(
            f"{name}: its first frame does not decode ({error_reason(error)})"
        ) from error
