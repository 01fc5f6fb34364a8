"""A video's stills: the poster frame and the short animated preview shown on hover.

Both are fed upright, SDR frames as the video is decoded, so neither needs a pass of its own.
The poster is chosen among the early keyframes (and about one frame a second, for clips with
a single keyframe), skipping black, flat and blurred frames, as frame 0 is often black.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pyvips

from stages.contract import Rendition
from stages.render import RenditionSpec, picture_from_rgb, save_animation

_PROBE_WIDTH = 96  # frames are judged on a grey copy this wide: enough for blur and blackness
_DARKEST = 24.0  # mean grey level (0-255) below which a frame counts as black
_FLATTEST = 8.0  # grey standard deviation below which a frame is one flat colour
_TIME_SLACK = 1e-3  # seconds: frame times are rounded, 3/24 s may read as 0.12499


@dataclass(frozen=True, slots=True)
class FrameQuality:
    """How a candidate looks: mean grey level, its spread, and Laplacian variance (focus)."""

    brightness: float
    contrast: float
    sharpness: float

    @property
    def usable(self) -> bool:
        return self.brightness >= _DARKEST and self.contrast >= _FLATTEST

    def rank(self) -> tuple[bool, float]:
        # Any usable frame beats every unusable one; then the sharpest wins (the earliest on
        # a tie). Unusable frames rank by contrast, so a dark clip still gets its best frame.
        return (self.usable, self.sharpness if self.usable else self.contrast)


def frame_quality(frame: av.VideoFrame) -> FrameQuality:
    height = max(3, round(_PROBE_WIDTH * frame.height / frame.width))
    grey = frame.reformat(width=_PROBE_WIDTH, height=height, format="gray").to_ndarray()
    pixels = grey.astype(np.float32)
    laplacian = (
        pixels[:-2, 1:-1] + pixels[2:, 1:-1] + pixels[1:-1, :-2] + pixels[1:-1, 2:]
    ) - 4 * pixels[1:-1, 1:-1]
    return FrameQuality(float(pixels.mean()), float(pixels.std()), float(laplacian.var()))


class PosterPicker:
    """Keeps the best-looking candidate among the frames of the first ``window`` seconds."""

    def __init__(self, window: float, *, max_candidates: int = 12) -> None:
        self._window = window
        self._left = max_candidates
        self._next_sample = 0.0
        self._best: tuple[tuple[bool, float], av.VideoFrame] | None = None

    @property
    def finished(self) -> bool:
        return self._left <= 0

    def offer(self, frame: av.VideoFrame, seconds: float) -> None:
        """Consider ``frame`` if it is a candidate (an early keyframe or the second's sample)."""
        if self._left <= 0:
            return
        if seconds > self._window:
            self._left = 0
            return
        if not (frame.key_frame or seconds >= self._next_sample):
            return
        self._left -= 1
        self._next_sample = seconds + 1.0
        rank = frame_quality(frame).rank()
        if self._best is None or rank > self._best[0]:
            self._best = (rank, frame)

    @property
    def best(self) -> av.VideoFrame | None:
        return self._best[1] if self._best is not None else None


class AnimationStrip:
    """Frames of the first ``seconds`` at ``fps``, shrunk to fit ``size`` px: the hover preview."""

    def __init__(self, *, seconds: float, fps: float, size: int) -> None:
        self._seconds = seconds
        self._step = 1.0 / fps
        self._size = size
        self._next = 0.0
        self._frames: list[np.ndarray] = []
        self._done = False

    @property
    def finished(self) -> bool:
        return self._done

    def offer(self, frame: av.VideoFrame, seconds: float) -> None:
        if self._done or seconds < self._next - _TIME_SLACK:
            return
        if seconds >= self._seconds:
            self._done = True
            return
        self._next = max(self._next, seconds) + self._step
        scale = min(1.0, self._size / max(frame.width, frame.height))
        width, height = max(2, round(frame.width * scale)), max(2, round(frame.height * scale))
        self._frames.append(frame.to_ndarray(width=width, height=height, format="rgb24"))

    def save(self, path: Path, spec: RenditionSpec) -> Rendition | None:
        """The animated WebP, or None when the clip is too short to move."""
        if len(self._frames) < 2:
            return None
        strip = picture_from_rgb(np.concatenate(self._frames, axis=0))
        strip.set_type(pyvips.GValue.gint_type, "page-height", self._frames[0].shape[0])
        delays = [round(self._step * 1000)] * len(self._frames)
        return save_animation(strip, path, spec, delays_ms=delays)
