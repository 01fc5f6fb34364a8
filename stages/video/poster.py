"""A video's stills: the poster frame and the short animated preview shown on hover.

Both are fed upright, SDR frames as the video is decoded, so neither needs a pass of its own.
The poster is chosen among the early keyframes (and about one frame a second, for clips with
a single keyframe), skipping black, flat and blurred frames, as frame 0 is often black. Each is
encoded by libvips in a helper thread as soon as its frames are in, beside the video encode.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import av
import numpy as np
import pyvips
from av.video.reformatter import VideoReformatter

from stages.contract import Rendition
from stages.photo.render import (
    RenditionSpec,
    Stills,
    picture_from_rgb,
    render_stills,
    save_animation,
)
from stages.video.output import writing

_PROBE_WIDTH = 96  # frames are judged on a grey copy this wide: enough for blur and blackness
_DARKEST = 24.0  # mean grey level (0-255) below which a frame counts as black
_FLATTEST = 8.0  # grey standard deviation below which a frame is one flat colour
_TIME_SLACK = 1e-3  # seconds: frame times are rounded, 3/24 s may read as 0.12499

# The helper thread that decodes stills beside the encode (a stage thread, not the worker's).
STILLS_THREAD_PREFIX = "stills"


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


def frame_quality(frame: av.VideoFrame, reformatter: VideoReformatter) -> FrameQuality:
    height = max(3, round(_PROBE_WIDTH * frame.height / frame.width))
    grey = reformatter.reformat(frame, width=_PROBE_WIDTH, height=height, format="gray")
    pixels = grey.to_ndarray().astype(np.float32)
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
        # One scaler for every candidate: a new one per frame costs more than the scaling.
        self._reformatter = VideoReformatter()

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
        rank = frame_quality(frame, self._reformatter).rank()
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
        self._reformatter = VideoReformatter()  # kept: its scaler is set up once, not per frame

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
        small = self._reformatter.reformat(frame, width=width, height=height, format="rgb24")
        self._frames.append(small.to_ndarray())

    def save(self, path: Path, spec: RenditionSpec) -> Rendition | None:
        """The animated WebP, or None when the clip is too short to move."""
        if len(self._frames) < 2:
            return None
        strip = picture_from_rgb(np.concatenate(self._frames, axis=0))
        strip.set_type(pyvips.GValue.gint_type, "page-height", self._frames[0].shape[0])
        delays = [round(self._step * 1000)] * len(self._frames)
        return save_animation(strip, path, spec, delays_ms=delays)


class VideoStills:
    """The poster's renditions and the animated preview of one video, made beside the encode.

    Frames are offered as they are decoded; each still goes to libvips in a helper thread the
    moment its frames are in (the preview after its first seconds, the poster after its window),
    and :meth:`finish` sends what is left when the video ends. Use it as a context manager: on
    exit the helper is shut down, and a failed pass waits for its work instead of leaking it.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        renditions: Sequence[RenditionSpec],
        animation: RenditionSpec | None,
        poster_window: float,
        animation_seconds: float,
        animation_fps: float,
    ) -> None:
        self._workdir = workdir
        self._renditions = renditions
        self._animation_spec = animation
        # No renditions, no poster (a motion photo's video): finished before the first frame.
        self.poster = PosterPicker(poster_window, max_candidates=12 if renditions else 0)
        self.animation = AnimationStrip(  # no seconds to collect when there is no preview
            seconds=animation_seconds if animation is not None else 0.0,
            fps=animation_fps,
            size=animation.size if animation is not None else 1,
        )
        self._helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix=STILLS_THREAD_PREFIX)
        self._poster_work: Future[Stills | None] | None = None
        self._animation_work: Future[Rendition | None] | None = None

    def __enter__(self) -> VideoStills:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._helper.shutdown(wait=True, cancel_futures=error is not None)

    @property
    def finished(self) -> bool:
        """Whether both have all their frames: the decoder may skip to keyframes, or stop."""
        return self.poster.finished and self.animation.finished

    def offer(self, frame: av.VideoFrame, seconds: float) -> None:
        """Show ``frame`` (``seconds`` from the start) to both; start whichever is complete."""
        if not self.poster.finished:
            self.poster.offer(frame, seconds)
            if self.poster.finished:
                self._start_poster()
        if not self.animation.finished:
            self.animation.offer(frame, seconds)
            if self.animation.finished:
                self._start_animation()

    def finish(self) -> None:
        """The video has no more frames: start what the end of the clip completed."""
        if self._poster_work is None:
            self._start_poster()
        if self._animation_work is None:
            self._start_animation()

    def result(self) -> tuple[list[Rendition], str | None]:
        """After :meth:`finish`: the poster's renditions, the animated preview, the placeholder."""
        assert self._poster_work is not None
        assert self._animation_work is not None
        with writing("the video's stills"):
            stills, animation = self._poster_work.result(), self._animation_work.result()
        renditions = list(stills.renditions) if stills is not None else []
        if animation is not None:
            renditions.append(animation)
        return renditions, stills.placeholder if stills is not None else None

    def _start_poster(self) -> None:
        self._poster_work = self._helper.submit(self._render_poster)

    def _start_animation(self) -> None:
        self._animation_work = self._helper.submit(self._render_animation)

    def _render_poster(self) -> Stills | None:
        best = self.poster.best
        if best is None:
            return None
        picture = picture_from_rgb(best.to_ndarray(format="rgb24"))
        return render_stills(picture, self._renditions, self._workdir)

    def _render_animation(self) -> Rendition | None:
        spec = self._animation_spec
        if spec is None:
            return None
        return self.animation.save(self._workdir / f"{spec.name}.webp", spec)
