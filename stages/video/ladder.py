"""An HLS ladder from one read of a video: every rung encoded from the same decoded frames.

Each decoded frame is pushed into one filter graph per rung (:mod:`stages.video.graph`: the
same scale, tone mapping and rotation the MP4 gets) and each rung's libx264 encodes what its
graph gives; each decoded audio frame goes to every rung's AAC encoder. Keyframes line up
across the ladder because every rung forces one on the same frames (the first at or after each
segment boundary) with a fixed GOP of the segment's length and scene-cut detection off, so
FFmpeg's ``hls`` muxer cuts every variant at the same times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import av.filter
from av.audio.stream import AudioStream
from av.container import InputContainer, OutputContainer
from av.video.frame import PictureType
from av.video.stream import VideoStream

from mediamill_core.hls import INIT_SEGMENT, VARIANT_PLAYLIST
from stages.contract import BadMediaError, Job
from stages.video.encoder import add_h264, output_rate
from stages.video.frame_times import FrameClock
from stages.video.graph import build_graph
from stages.video.output import error_reason, writing
from stages.video.policy import Plan, VideoFacts, aac_sample_rate, fit, plan_for
from stages.video.single_pass import read_packets
from stages.video.tonemap import write_cube

_CHECK_EVERY = 8  # packets between cancellation checks


@dataclass(frozen=True, slots=True)
class Rung:
    """One variant: its name (``720p``), its plan (size before rotation, rate cap) and the
    bitrate its encoder may not exceed (x264's VBV cap over a capped CRF)."""

    name: str
    plan: Plan
    max_bitrate: int


@dataclass(frozen=True, slots=True)
class LadderSettings:
    segment_seconds: float
    crf: int
    preset: str
    audio_bitrate: int
    threads: int


def rungs_for(
    facts: VideoFacts,
    *,
    short_sides: tuple[int, ...],
    max_fps: float,
    bits_per_pixel: float,
) -> list[Rung]:
    """The source's own size (capped at the largest rung) and every smaller rung: never up."""
    rungs = []
    for side in _sides(facts.width, facts.height, short_sides):
        plan = plan_for(facts, max_short_side=side, max_fps=max_fps)
        rungs.append(Rung(f"{side}p", plan, _cap(plan.width, plan.height, bits_per_pixel)))
    return rungs


# A ladder's files beyond its streams' bits: fMP4 boxes, segment indexes and playlists (0.8 to
# 1.1 % of rungs at their caps, measured on noise of 6 and 30 s), with room to spare.
_CONTAINER_MARGIN = 1.05


def ladder_bytes_bound(
    width: int,
    height: int,
    duration: float,
    *,
    short_sides: tuple[int, ...],
    bits_per_pixel: float,
    audio_bitrate: int,
) -> int:
    """The most the ladder of a ``duration``-second video can take on disk, from its size alone.

    Every rung's encoder is held to its cap by x264's VBV (``maxrate``, ``bufsize`` twice it), so
    over the whole video a rung writes at most its cap times the duration plus one buffer;
    audio is at its set rate on every rung.
    """
    bits = 0.0
    for side in _sides(width, height, short_sides):
        cap = _cap(*fit(width, height, side), bits_per_pixel)
        bits += (cap + audio_bitrate) * duration + 2 * cap
    return math.ceil(bits / 8 * _CONTAINER_MARGIN)


def _sides(width: int, height: int, short_sides: tuple[int, ...]) -> list[int]:
    short = min(width, height)
    top = min(short, max(short_sides))
    return sorted({top, *(side for side in short_sides if side < top)}, reverse=True)


def _cap(width: int, height: int, bits_per_pixel: float) -> int:
    return max(64_000, round(width * height * bits_per_pixel))


@dataclass(slots=True)
class EncodedVariant:
    """A rung being written: its muxer, filter graph and encoders."""

    rung: Rung
    output: OutputContainer
    graph: av.filter.Graph
    video: Any
    audio: Any
    # The next segment boundary (the first frame's pts plus whole segments): the first frame at
    # or after it is forced to be a keyframe. The muxer measures segments from that frame too.
    next_key: int | None = None
    step: int = 0  # a segment's length in the graph's clock
    frames: int = 0


@dataclass(slots=True)
class LadderRead:
    """What the read saw of the input."""

    packets: int = 0
    corrupt: int = 0
    frames: int = 0
    cut_short: bool = False
    warnings: list[str] = field(default_factory=list)


class LadderPass:
    """One read of the input into one HLS variant per rung, under ``folder/<rung>/``."""

    def __init__(
        self,
        job: Job,
        source: InputContainer,
        facts: VideoFacts,
        rungs: list[Rung],
        settings: LadderSettings,
    ) -> None:
        self.job, self.source, self.facts, self.rungs, self.settings = (
            job,
            source,
            facts,
            rungs,
            settings,
        )
        self.video_in: VideoStream = source.streams[facts.video_index]  # type: ignore[assignment]
        self.video_in.thread_type = "AUTO"
        self.video_in.codec_context.thread_count = settings.threads
        self.audio_in: AudioStream | None = (
            source.streams[facts.audio_index]  # type: ignore[assignment]
            if facts.audio_index is not None
            else None
        )
        self.read = LadderRead()
        self.clock = FrameClock()
        self._last_pts: int | None = None
        self.variants: list[EncodedVariant] = []

    def write(self, folder: Path) -> list[Path]:
        """Write every variant; the variant playlists, by rung. On failure the caller removes
        ``folder`` (the muxer writes segments as it goes)."""
        lut = None
        if self.facts.signal is not None:
            with writing("the tone-mapping table"):
                lut = write_cube(self.job.workdir / "tonemap.cube", self.facts.signal)
        try:
            for rung in self.rungs:
                self.variants.append(self._open(folder / rung.name, rung, lut))
            wanted = [self.video_in] + ([self.audio_in] if self.audio_in is not None else [])
            for count, packet in enumerate(read_packets(self.source, wanted, self._cut_short)):
                if count % _CHECK_EVERY == 0:
                    self.job.check_cancelled()
                if packet.stream_index == self.video_in.index:
                    if packet.size:
                        self.read.packets += 1
                    self._decode_video(packet)
                else:
                    self._decode_audio(packet)
            self.job.check_cancelled()
            self._decode_video(None)
            if self.audio_in is not None:
                self._decode_audio(None)
            for variant in self.variants:
                self._filter(variant, None)
                self._mux(variant, variant.video.encode(None))
                if variant.audio is not None:
                    self._mux(variant, variant.audio.encode(None))
            for variant in self.variants:
                with writing("the HLS ladder"):
                    variant.output.close()
        finally:
            for variant in self.variants:
                variant.output.close()  # a second close does nothing
        self._check_read()
        return [folder / rung.name / VARIANT_PLAYLIST for rung in self.rungs]

    def _open(self, folder: Path, rung: Rung, lut: Path | None) -> EncodedVariant:
        settings = self.settings
        rate = output_rate(self.facts, rung.plan)
        gop = max(1, round(settings.segment_seconds * float(rate)))
        with writing("the HLS ladder"):
            folder.mkdir(parents=True, exist_ok=True)
            output = av.open(
                str(folder / VARIANT_PLAYLIST),
                mode="w",
                format="hls",
                options={
                    "hls_time": f"{settings.segment_seconds:g}",
                    "hls_segment_type": "fmp4",
                    "hls_playlist_type": "vod",
                    "hls_flags": "independent_segments",
                    "hls_fmp4_init_filename": INIT_SEGMENT,
                    "hls_segment_filename": str(folder / "seg_%05d.m4s"),
                },
            )
        video = add_h264(
            output,
            self.video_in,
            self.facts,
            rung.plan,
            options={
                "crf": str(settings.crf),
                "preset": settings.preset,
                "maxrate": str(rung.max_bitrate),
                "bufsize": str(2 * rung.max_bitrate),
                # A fixed GOP of one segment, no scene cuts: keyframes only where forced.
                "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0",
                "forced-idr": "1",
            },
            threads=settings.threads,
            tonemapped=lut is not None,
        )
        graph = build_graph(
            self.video_in,
            width=rung.plan.width,
            height=rung.plan.height,
            rotation=self.facts.rotation,
            fps_cap=rung.plan.fps_cap,
            lut=lut,
            threads=settings.threads,
        )
        audio = None
        if self.audio_in is not None:
            rate_hz = aac_sample_rate(self.audio_in.codec_context.sample_rate)
            audio = output.add_stream("aac", rate=rate_hz, layout="stereo")
            audio.bit_rate = settings.audio_bitrate
        step = round(Fraction(settings.segment_seconds).limit_denominator(1000) / video.time_base)
        return EncodedVariant(rung, output, graph, video, audio, step=max(1, step))

    def _cut_short(self, error: av.error.FFmpegError) -> None:
        if self.read.frames == 0:
            raise BadMediaError(f"unreadable video data: {error_reason(error)}") from error
        self.read.cut_short = True
        self.read.warnings.append(
            f"the ladder ends where the file's data does ({error_reason(error)})"
        )

    def _decode_video(self, packet: av.Packet[Any] | None) -> None:
        try:
            frames = self.video_in.codec_context.decode(packet)
        except av.error.EOFError:
            return
        except av.error.FFmpegError:  # input damage: skipped, and counted
            self.read.corrupt += 1
            return
        for frame in frames:
            self.read.frames += 1
            self.read.corrupt += frame.is_corrupt  # concealed damage: shown, as players do
            frame.pts = self.clock.time_of(frame)
            if frame.pts is not None:
                if self._last_pts is not None and frame.pts <= self._last_pts:
                    continue  # a repeat: MP4 cannot store two frames at one time
                self._last_pts = frame.pts
            for variant in self.variants:
                self._filter(variant, frame)

    def _filter(self, variant: EncodedVariant, frame: av.VideoFrame | None) -> None:
        variant.graph.vpush(frame)
        while True:
            try:
                filtered = variant.graph.vpull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            filtered.pict_type = PictureType.NONE
            if variant.next_key is None and filtered.pts is not None:
                variant.next_key = filtered.pts
            if (
                filtered.pts is not None
                and variant.next_key is not None
                and filtered.pts >= variant.next_key
            ):
                # The first frame at or after each boundary, the same frame in every rung.
                filtered.pict_type = PictureType.I
                while variant.next_key <= filtered.pts:
                    variant.next_key += variant.step
            variant.frames += 1
            self._mux(variant, variant.video.encode(filtered))

    def _decode_audio(self, packet: av.Packet[Any] | None) -> None:
        assert self.audio_in is not None
        try:
            frames = self.audio_in.codec_context.decode(packet)
        except av.error.FFmpegError:
            return  # a click of silence (or the end, flushed twice); the video counts
        for frame in frames:
            frame.pts = None  # each encoder's resampler keeps its own sample clock
            for variant in self.variants:
                self._mux(variant, variant.audio.encode(frame))

    def _mux(self, variant: EncodedVariant, packets: list[av.Packet[Any]]) -> None:
        with writing("the HLS ladder"):
            variant.output.mux(packets)

    def _check_read(self) -> None:
        if self.read.frames == 0:
            raise BadMediaError("no decodable video frame in the file")
        if self.read.corrupt:
            self.read.warnings.append(
                f"{self.read.corrupt} of {self.read.packets} video packets were corrupt "
                "(skipped or concealed)"
            )
