"""Copying a stream into the MP4 as it is: every packet kept, with timestamps MP4 can store.

MP4 needs on every packet a decoding timestamp (DTS), strictly increasing, never after the
presentation timestamp (PTS). Matroska and WebM store only the PTS, and FFmpeg derives the DTS
where it can: for H.264 with B-frames it gives none on the first packets (the keyframe among
them), which a copy must not drop. A missing DTS is placed between its neighbours' (or a frame
before the next one, or after the last one) when that keeps the order MP4 needs; a packet
without PTS takes its DTS when the stream has no reordering. What cannot be made right
(timestamps that go back or repeat, B-frames without timestamps, a stream that does not
start on a keyframe) raises ``RemuxRefused``, and the stage encodes that stream instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import Any, Literal

import av

StreamKind = Literal["video", "audio"]
_MAX_HELD = 64  # packets without DTS held for a later one with DTS; beyond, they are placed now


class RemuxRefused(Exception):
    """A stream that cannot be copied as a valid MP4 stream: the stage encodes it instead."""

    def __init__(self, stream: StreamKind, reason: str) -> None:
        super().__init__(f"{stream} cannot be copied: {reason}")
        self.stream = stream
        self.reason = reason


class CopiedTimestamps:
    """Gives the packets of one copied stream back in order, each with a DTS MP4 takes.

    ``reorders``: the stream may present frames in another order than it decodes them
    (B-frames), so a missing timestamp cannot simply be copied from the other one.
    """

    def __init__(
        self,
        kind: StreamKind,
        *,
        rate: Fraction | None,
        time_base: Fraction | None,
        reorders: bool,
        keyframe_first: bool,
    ) -> None:
        self._kind = kind
        self._rate_step = round(1 / (rate * time_base)) if rate and time_base else None
        self._reorders = reorders
        self._keyframe_first = keyframe_first
        self._held: list[av.Packet[Any]] = []
        self._last: int | None = None  # the last DTS given out
        self._count = 0
        self.repaired = 0  # packets whose DTS (or PTS) was derived here

    def add(self, packet: av.Packet[Any]) -> list[av.Packet[Any]]:
        """``packet`` (not an end-of-stream marker) and any held before it, when ready."""
        if packet.dts is None:
            self._held.append(packet)
            return self._place(None) if len(self._held) >= _MAX_HELD else []
        ready = self._place(packet.dts)
        ready.append(self._give(packet))
        return ready

    def end(self) -> list[av.Packet[Any]]:
        """The packets still held when the stream ends."""
        return self._place(None)

    def _place(self, next_dts: int | None) -> list[av.Packet[Any]]:
        held, self._held = self._held, []
        if not held:
            return []
        for candidate in self._candidates(held, next_dts):
            if self._fits(held, candidate, next_dts):
                for packet, dts in zip(held, candidate, strict=True):
                    packet.dts = dts
                return [self._give(packet, derived=True) for packet in held]
        raise RemuxRefused(
            self._kind,
            f"{len(held)} packets from packet {self._count + 1} have no decoding timestamp "
            "that keeps them in order",
        )

    def _candidates(self, held: list[av.Packet[Any]], next_dts: int | None) -> Iterator[list[int]]:
        count, last = len(held), self._last
        presented = [packet.pts for packet in held]
        if not self._reorders and None not in presented:
            yield [pts for pts in presented if pts is not None]
        if last is not None and next_dts is not None:
            yield [last + (next_dts - last) * (k + 1) // (count + 1) for k in range(count)]
        step = held[0].duration or self._rate_step
        if step:
            if next_dts is not None:
                yield [next_dts - (count - k) * step for k in range(count)]
            if last is not None:
                yield [last + (k + 1) * step for k in range(count)]

    def _fits(self, held: list[av.Packet[Any]], candidate: list[int], next_dts: int | None) -> bool:
        lower = self._last
        for packet, dts in zip(held, candidate, strict=True):
            if lower is not None and dts <= lower:
                return False
            if packet.pts is not None and packet.pts < dts:
                return False
            lower = dts
        return next_dts is None or lower is None or lower < next_dts

    def _give(self, packet: av.Packet[Any], *, derived: bool = False) -> av.Packet[Any]:
        """Check ``packet``, whose DTS is set (``derived`` here or not), against those before."""
        dts = packet.dts
        assert dts is not None
        number = self._count + 1
        if self._last is not None and dts <= self._last:
            raise RemuxRefused(
                self._kind, f"decoding timestamps go back or repeat at packet {number}"
            )
        if packet.pts is None:
            if self._reorders:
                raise RemuxRefused(self._kind, f"packet {number} has no presentation timestamp")
            packet.pts = dts
            derived = True
        elif packet.pts < dts:
            raise RemuxRefused(self._kind, f"packet {number} is presented before it is decoded")
        if number == 1 and self._keyframe_first and not packet.is_keyframe:
            raise RemuxRefused(self._kind, "the stream does not start with a keyframe")
        self._last = dts
        self._count = number
        self.repaired += derived
        return packet
