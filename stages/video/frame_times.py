"""The times of a video's frames as its input gives them, read as players read them.

``FrameCadence`` tells a steady frame rate from a variable one by the spacing of packet
timestamps; ``FrameClock`` gives each decoded frame the time FFmpeg would show it at.
"""

from __future__ import annotations

from fractions import Fraction

import av


class FrameCadence:
    """Whether frames come at a steady rate, from the spacing of video packet timestamps."""

    def __init__(self, time_base: Fraction | None) -> None:
        self._time_base = time_base or Fraction(1, 90000)
        self._last: int | None = None
        self._shortest: int | None = None
        self._longest = 0

    def add(self, dts: int) -> None:
        if self._last is not None and dts > self._last:
            step = dts - self._last
            self._shortest = step if self._shortest is None else min(self._shortest, step)
            self._longest = max(self._longest, step)
        self._last = dts

    @property
    def variable(self) -> bool:
        # Timestamps rounded to a coarse time base (Matroska's 1 ms) jitter by a tick.
        if self._shortest is None:
            return False
        return self._longest - self._shortest > max(1, 0.1 * self._shortest)


class FrameClock:
    """A decoded frame's time as FFmpeg guesses it (its ``best_effort_timestamp``): the PTS,
    unless PTS have gone back more often than DTS, as in AVI, which stores decoding times only;
    then the DTS, and for the frames a flushed decoder gives without one, a step past the last.
    """

    def __init__(self) -> None:
        self._faulty_pts = self._faulty_dts = 0
        self._last_pts: int | None = None
        self._last_dts: int | None = None
        self._last: int | None = None
        self._step = 0

    def time_of(self, frame: av.VideoFrame) -> int | None:
        pts, dts = frame.pts, frame.dts
        if dts is not None:
            self._faulty_dts += self._last_dts is not None and dts <= self._last_dts
        self._last_dts = dts if dts is not None else pts
        if pts is not None:
            self._faulty_pts += self._last_pts is not None and pts <= self._last_pts
        self._last_pts = pts if pts is not None else dts
        time = pts
        if pts is None or self._faulty_pts > self._faulty_dts:
            time = dts
            if time is None and self._last is not None and self._step:
                time = self._last + self._step
        if time is not None:
            if self._last is not None and time > self._last:
                self._step = time - self._last
            self._last = time
        return time
