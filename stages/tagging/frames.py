"""Pictures for Rekognition's image APIs: a preview or a video's keyframes, within its limits.

DetectLabels and DetectModerationLabels take JPEG or PNG bytes, at most 5 MB, each side 80 to
10,000 px. A preview that already fits is sent as it is; anything else is re-encoded as a JPEG
whose long side is at most 1440 px. A picture with a side under 80 px is upscaled until it has
80 (a few labels from a blurry picture beat none); one so narrow that its long side would then
pass 10,000 px cannot be sent at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import pyvips
from av.container import InputContainer
from av.video.stream import VideoStream

from stages.contract import S3Location
from stages.photo.render import picture_from_rgb, to_srgb
from stages.probe.stage import open_video

MAX_BYTES = 5_000_000  # 5 MB, counted in decimal megabytes to stay on the safe side
MIN_SIDE = 80
MAX_SIDE = 10_000
SEND_SIDE = 1440  # long side of what we encode: plenty for labels, far under every limit
_QUALITIES = (85, 70, 50)
_SENT_AS_IS = {"jpegload", "pngload"}
_ROTATIONS = {90: "d90", 180: "d180", 270: "d270"}


class UnusablePicture(Exception):
    """A picture that cannot be brought within Rekognition's limits: tagging skips it."""


@dataclass(frozen=True, slots=True)
class Frame:
    """Bytes to send, and where in a video the picture was taken (None for a photo).

    ``as_is``: the bytes are the file's own, so Rekognition may read the stored file instead;
    ``stored``: where it is stored, when it is to be read from there.
    """

    data: bytes
    seconds: float | None = None
    as_is: bool = False
    stored: S3Location | None = None


def picture_frame(path: Path) -> Frame:
    """The file's own bytes when Rekognition accepts them, else a JPEG that fits its limits."""
    try:
        header = pyvips.Image.new_from_file(str(path))  # reads the header only
        width, height = int(header.width), int(header.height)
        loader = header.get("vips-loader")
        if (
            loader in _SENT_AS_IS
            and _within_limits(width, height)
            and path.stat().st_size <= MAX_BYTES
        ):
            return Frame(path.read_bytes(), as_is=True)
        target_width, target_height = target_size(width, height)
        image = pyvips.Image.thumbnail(str(path), target_width, height=target_height, size="force")
        return Frame(encode_jpeg(image))
    except pyvips.Error as error:
        raise UnusablePicture("libvips cannot read the picture") from error


def target_size(width: int, height: int) -> tuple[int, int]:
    """Width and height to encode at: long side at most SEND_SIDE, short side at least MIN_SIDE."""
    long_side, short_side = max(width, height), min(width, height)
    if short_side < 1:
        raise UnusablePicture(f"a {width}x{height} picture is empty")
    scale = min(1.0, SEND_SIDE / long_side)
    if short_side * scale < MIN_SIDE:
        scale = MIN_SIDE / short_side
    if round(long_side * scale) > MAX_SIDE:
        raise UnusablePicture(
            f"a {width}x{height} picture is too narrow for Rekognition "
            f"(each side {MIN_SIDE} to {MAX_SIDE} px)"
        )
    return max(MIN_SIDE, round(width * scale)), max(MIN_SIDE, round(height * scale))


def encode_jpeg(image: pyvips.Image) -> bytes:
    """8-bit sRGB JPEG without metadata, flattened on white, under MAX_BYTES."""
    image = to_srgb(image)
    if image.hasalpha():
        image = image.flatten(background=[255, 255, 255])
    for quality in _QUALITIES:
        data: bytes = image.jpegsave_buffer(Q=quality, optimize_coding=True, keep="none")
        if len(data) <= MAX_BYTES:
            return data
    raise UnusablePicture(f"a {image.width}x{image.height} JPEG stays over {MAX_BYTES} bytes")


def keyframes(
    path: Path,
    video_format: str,
    *,
    count: int,
    rotation: int,
    check_cancelled: Callable[[], None],
) -> tuple[list[Frame], list[str]]:
    """Up to ``count`` distinct keyframes, evenly spaced over the video, and any warnings.

    Each is found by seeking to the keyframe at or before the middle of its share of the video
    and decoding keyframes only, so a long video costs ``count`` seeks, not a full decode.
    """
    frames: list[Frame] = []
    warnings: list[str] = []
    try:
        with open_video(path, video_format) as container:
            warnings += _read_keyframes(container, count, rotation, check_cancelled, frames)
    except av.error.FFmpegError as error:
        warnings.append(f"keyframes not read: {error.strerror or error}")
    except KeyError:
        warnings.append(f"keyframes not read: {video_format!r} is not a video format")
    return frames, warnings


def _read_keyframes(
    container: InputContainer,
    count: int,
    rotation: int,
    check_cancelled: Callable[[], None],
    frames: list[Frame],
) -> list[str]:
    """Append keyframes to ``frames`` (so those read survive a later failure); the warnings."""
    stream = _video_stream(container)
    if stream is None or not stream.time_base:
        return ["no video stream to take keyframes from"]
    time_base = stream.time_base
    stream.codec_context.skip_frame = "NONKEY"
    duration = _seconds(container, stream)
    start = stream.start_time or 0
    taken: set[int] = set()
    warnings: list[str] = []
    for index in range(count):
        check_cancelled()
        target = duration * (index + 0.5) / count
        # The keyframe at or before the target; seek() also flushes the decoder.
        container.seek(int(target / time_base) + start, stream=stream, backward=True)
        frame = next(iter(container.decode(stream)), None)
        if frame is None or frame.pts is None or frame.pts in taken:
            continue
        taken.add(frame.pts)
        seconds = round(float((frame.pts - start) * time_base), 3)
        try:
            frames.append(Frame(_frame_jpeg(frame, rotation), seconds))
        except UnusablePicture as unusable:
            warnings.append(f"keyframe at {seconds} s: {unusable}")
    return warnings


def _frame_jpeg(frame: av.VideoFrame, rotation: int) -> bytes:
    width, height = target_size(frame.width, frame.height)
    # FFmpeg's scaler shrinks a 4K frame far cheaper than copying it whole into libvips.
    small: Any = frame.reformat(width=width, height=height, format="rgb24")
    image = picture_from_rgb(small.to_ndarray())
    if rotation in _ROTATIONS:
        image = image.rot(_ROTATIONS[rotation])
    return encode_jpeg(image)


def _video_stream(container: InputContainer) -> VideoStream | None:
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _seconds(container: InputContainer, stream: VideoStream) -> float:
    if container.duration:
        return float(container.duration / av.time_base)
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return 0.0


def _within_limits(width: int, height: int) -> bool:
    return min(width, height) >= MIN_SIDE and max(width, height) <= MAX_SIDE
