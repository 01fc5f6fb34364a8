"""What a video is (its facts) and what must happen to it to play in every browser (the plan).

The policy is a leading self-hosted photo platform's: H.264 8-bit 4:2:0 no larger than the target,
with AAC or MP3 audio, is copied as it is (only re-muxed, to MP4 with ``faststart``); anything
else is transcoded to H.264 + AAC, upright, 8-bit SDR BT.709, within the size and rate limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import av
from av.container import InputContainer
from av.video.stream import VideoStream

from stages.video import quicktime
from stages.video.tonemap import WideSignal, wide_signal

WEB_VIDEO_CODECS = frozenset({"h264"})
WEB_PIXEL_FORMATS = frozenset({"yuv420p"})
WEB_AUDIO_CODECS = frozenset({"aac", "mp3"})
_AAC_RATES = (48000, 44100, 32000, 24000, 22050, 16000)


@dataclass(frozen=True, slots=True)
class VideoFacts:
    """The facts read from the container header; displayed sizes are after rotation."""

    video_index: int
    audio_index: int | None
    video_codec: str
    profile: str | None
    pixel_format: str
    bit_depth: int
    width: int  # as stored
    height: int
    rotation: int  # clockwise degrees to turn for display
    rate: Fraction | None
    reorders: bool  # B-frames: decoded in another order than shown
    duration: float | None
    bitrate: int | None
    signal: WideSignal | None
    audio_codec: str | None
    audio_channels: int | None
    audio_sample_rate: int | None
    created_at: str | None
    location: dict[str, float] | None
    demuxer: str  # FFmpeg's name for the container's format ("avi", "matroska,webm", ...)

    @property
    def display_size(self) -> tuple[int, int]:
        if self.rotation in (90, 270):
            return self.height, self.width
        return self.width, self.height

    def metadata(self) -> dict[str, Any]:
        """Flat, as the probe's; publish moves ``location`` to its owner-only field."""
        width, height = self.display_size
        facts: dict[str, Any] = {
            "duration": self.duration,
            "video_codec": self.video_codec,
            "video_profile": self.profile,
            "bit_depth": self.bit_depth,
            "pixel_format": self.pixel_format,
            "width": width,
            "height": height,
            "rotation": self.rotation,
            "fps": round(float(self.rate), 3) if self.rate else None,
            "hdr": self.signal.value if self.signal in (WideSignal.HLG, WideSignal.PQ) else None,
            "bitrate": self.bitrate,
            "audio_codec": self.audio_codec,
            "audio_channels": self.audio_channels,
            "audio_sample_rate": self.audio_sample_rate,
            "created_at": self.created_at,
        }
        if self.location is not None:
            facts["location"] = self.location
        return facts


@dataclass(frozen=True, slots=True)
class Plan:
    """What the stage does: copy or encode each stream, and the encoded picture's geometry."""

    copy_video: bool
    copy_audio: bool
    encode_audio: bool
    width: int  # encoded size before rotation (the rotation swaps them)
    height: int
    fps_cap: float | None
    # Why the video is encoded (empty when copied), and why a stream that could have been
    # copied was not (its timestamps, say: see stages.video.remux).
    reasons: tuple[str, ...]

    def encoding(self, stream: str, reason: str) -> Plan:
        """This plan with ``stream`` ("video" or "audio") encoded instead of copied."""
        if stream == "video":
            return replace(self, copy_video=False, reasons=(*self.reasons, reason))
        return replace(self, copy_audio=False, encode_audio=True, reasons=(*self.reasons, reason))


def read_facts(container: InputContainer, probed: Mapping[str, Any]) -> VideoFacts:
    """Facts of the first real video stream and the first audio stream.

    Rotation and duration come from the probe (``probed``), which read them already.
    """
    videos = [
        stream
        for stream in container.streams.video
        if not stream.disposition & av.stream.Disposition.attached_pic
    ]
    video: VideoStream = videos[0]
    audio = container.streams.audio[0] if container.streams.audio else None
    context = video.codec_context
    pixel_format = context.pix_fmt or "unknown"
    tags = {str(key): str(value) for key, value in container.metadata.items()}
    return VideoFacts(
        video_index=video.index,
        audio_index=audio.index if audio is not None else None,
        video_codec=context.codec.canonical_name,
        profile=context.profile,
        pixel_format=pixel_format,
        bit_depth=_bit_depth(pixel_format),
        width=int(video.width),
        height=int(video.height),
        rotation=int(probed.get("rotation") or 0) % 360,
        rate=video.average_rate or video.guessed_rate,
        reorders=bool(context.has_b_frames),
        duration=probed.get("duration"),
        bitrate=int(container.bit_rate) if container.bit_rate else None,
        signal=wide_signal(int(context.color_trc), int(context.color_primaries)),
        audio_codec=audio.codec_context.codec.canonical_name if audio is not None else None,
        audio_channels=audio.codec_context.channels if audio is not None else None,
        audio_sample_rate=audio.codec_context.sample_rate if audio is not None else None,
        created_at=quicktime.creation_time(tags),
        location=quicktime.location(tags),
        demuxer=container.format.name,
    )


def plan_for(facts: VideoFacts, *, max_short_side: int, max_fps: float) -> Plan:
    """Copy what is web-safe already, encode the rest (see the module docstring)."""
    width, height = fit(facts.width, facts.height, max_short_side)
    fps = float(facts.rate) if facts.rate else None
    fps_cap = max_fps if fps is not None and fps > max_fps + 0.01 else None
    reasons = []
    if facts.video_codec not in WEB_VIDEO_CODECS:
        reasons.append(f"codec {facts.video_codec}")
    if facts.pixel_format not in WEB_PIXEL_FORMATS:
        reasons.append(f"pixel format {facts.pixel_format}")
    if facts.signal is not None:
        reasons.append(f"{facts.signal.value} colour")
    if min(facts.width, facts.height) > max_short_side:
        reasons.append(f"larger than {max_short_side} px")
    if fps_cap is not None:
        reasons.append(f"faster than {max_fps:g} fps")
    if facts.rotation:
        reasons.append(f"rotated {facts.rotation} degrees")
    if facts.reorders and facts.demuxer == "avi":
        # AVI stores no presentation times: copied, B-frames would show out of order.
        reasons.append("B-frames in AVI")
    audio = facts.audio_codec
    return Plan(
        copy_video=not reasons,
        copy_audio=audio in WEB_AUDIO_CODECS,
        encode_audio=audio is not None and audio not in WEB_AUDIO_CODECS,
        width=width,
        height=height,
        fps_cap=fps_cap,
        reasons=tuple(reasons),
    )


def aac_sample_rate(rate: int | None) -> int:
    """The input's rate when AAC players all take it, else 48 kHz."""
    return rate if rate in _AAC_RATES else 48000


def fit(width: int, height: int, max_short_side: int) -> tuple[int, int]:
    """Scaled so the short side is at most ``max_short_side`` (never up), both sides even."""
    scale = min(1.0, max_short_side / min(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _bit_depth(pixel_format: str) -> int:
    try:
        return int(av.VideoFormat(pixel_format).components[0].bits)
    except (ValueError, IndexError):
        return 8
