"""The ``transcode`` stage: a video that plays in every browser, its poster, previews and facts.

One pass over the file demuxes, decodes (threaded), filters (:mod:`stages.video_graph`), encodes
with libx264 and muxes an MP4 with ``faststart``, while the poster and hover-preview frames are
picked from the same decoded frames. Web-safe video is copied, not re-encoded (see
:mod:`stages.video_policy`). Only PyAV is used: no ffmpeg binary.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, Literal

import av
import av.error
from av.audio.stream import AudioStream
from av.container import InputContainer, OutputContainer
from av.video.frame import PictureType
from av.video.stream import VideoStream
from pydantic import Field

from stages.contract import (
    BadMediaError,
    Job,
    MediaKind,
    Rendition,
    Stage,
    StageOptions,
    StageResult,
)
from stages.poster import VideoStills
from stages.probe import open_video
from stages.render import DEFAULT_RENDITIONS, RenditionSpec
from stages.tonemap import write_cube
from stages.video_graph import build_graph
from stages.video_policy import (
    FrameCadence,
    Plan,
    VideoFacts,
    aac_sample_rate,
    plan_for,
    read_facts,
)

Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
]
_CHECK_EVERY = 8  # packets between cancellation checks: a few frames, well under a second
_BT709 = 1  # FFmpeg's enum value for BT.709 primaries, transfer and matrix alike
_LIMITED_RANGE = 1


class TranscodeOptions(StageOptions):
    crf: int = Field(default=23, ge=0, le=51)
    preset: Preset = "veryfast"
    max_short_side: int = Field(default=720, ge=144, le=4320)
    max_fps: float = Field(default=60.0, gt=0, le=240)
    audio_bitrate: int = Field(default=128_000, ge=32_000, le=512_000)
    # 0: every core, whatever the worker's CPU threads (see docs/design.md, "Video").
    threads: int = Field(default=0, ge=0, le=64, description="0: FFmpeg's count for all cores")
    poster_window: float = Field(default=10.0, gt=0, le=600)
    renditions: tuple[RenditionSpec, ...] = Field(default=DEFAULT_RENDITIONS, min_length=1)
    preview_anim: RenditionSpec | None = RenditionSpec(
        name="preview_anim", size=320, format="webp", quality=60
    )
    preview_anim_seconds: float = Field(default=3.0, gt=0, le=30)
    preview_anim_fps: float = Field(default=8.0, gt=0, le=30)
    max_corrupt_fraction: float = Field(default=0.2, ge=0, le=1)


class TranscodeStage(Stage):
    """Web-ready MP4, poster stills, animated preview and metadata for every video."""

    name = "transcode"
    version = "1.0.0"
    kinds = frozenset({MediaKind.VIDEO})
    requires = ("probe",)
    cpu_bound = True
    timeout = 3 * 3600.0
    Options = TranscodeOptions

    def run_sync(self, job: Job) -> StageResult:
        options = self.options
        assert isinstance(options, TranscodeOptions)
        try:
            source = open_video(job.original, str(job.metadata.get("format")))
        except (av.error.FFmpegError, KeyError) as error:
            raise BadMediaError(f"unreadable video: {_reason(error)}") from error
        with source:
            facts = read_facts(source, job.metadata)
            plan = plan_for(facts, max_short_side=options.max_short_side, max_fps=options.max_fps)
            job.log.info("transcode_plan", copy_video=plan.copy_video, reasons=plan.reasons)
            run = VideoPass(job, source, facts, plan, options)
            video = run.write(job.workdir / "video.mp4")
        return _result(job, options, facts, plan, run, video)


@dataclass(slots=True)
class Tally:
    """What the pass saw: packets, corrupt ones skipped, frames decoded."""

    packets: int = 0
    corrupt: int = 0
    frames: int = 0
    warnings: list[str] = field(default_factory=list)


class VideoPass:
    """One read of the input: copy or encode each stream, feed the stills on the way."""

    def __init__(
        self,
        job: Job,
        source: InputContainer,
        facts: VideoFacts,
        plan: Plan,
        options: TranscodeOptions,
    ) -> None:
        self.job, self.source, self.facts, self.plan, self.options = (
            job,
            source,
            facts,
            plan,
            options,
        )
        self.video_in: VideoStream = source.streams[facts.video_index]  # type: ignore[assignment]
        self.video_in.thread_type = "AUTO"  # frame and slice threads, as the ffmpeg CLI decodes
        self.video_in.codec_context.thread_count = options.threads
        self.audio_in: AudioStream | None = (
            source.streams[facts.audio_index]  # type: ignore[assignment]
            if facts.audio_index is not None
            else None
        )
        stream_start, time_base = self.video_in.start_time, self.video_in.time_base
        self.start = float(stream_start * time_base) if stream_start and time_base else 0.0
        self.stills = VideoStills(
            job.workdir,
            renditions=options.renditions,
            animation=options.preview_anim,
            poster_window=options.poster_window,
            animation_seconds=options.preview_anim_seconds,
            animation_fps=options.preview_anim_fps,
        )
        self.cadence = FrameCadence(self.video_in.time_base)
        self.tally = Tally()
        self.graph: av.filter.Graph | None = None

    def write(self, path: Path) -> Path:
        """Write the MP4 to ``path``; on any failure (or cancellation) no file is left."""
        with self.stills, _mp4_output(path) as output:
            video_out = self._add_video(output)
            audio_out = self._add_audio(output)
            wanted = [self.video_in] + ([self.audio_in] if audio_out is not None else [])
            try:
                for count, packet in enumerate(self.source.demux(wanted)):
                    if count % _CHECK_EVERY == 0:
                        self.job.check_cancelled()
                    if packet.stream_index == self.video_in.index:
                        self._video_packet(packet, output, video_out)
                    elif audio_out is not None:
                        self._audio_packet(packet, output, audio_out)
            except av.error.FFmpegError as error:
                self._cut_short(error)
            self.job.check_cancelled()
            self._flush(output, video_out, audio_out)
            self._check_tally()
        return path

    # --- video --------------------------------------------------------------------------------

    def _add_video(self, output: OutputContainer) -> Any:
        if self.plan.copy_video:
            return output.add_stream_from_template(self.video_in)
        rate = self.facts.rate or Fraction(30)
        if self.plan.fps_cap is not None:
            rate = Fraction(self.plan.fps_cap).limit_denominator(1001)
        stream: Any = output.add_stream("libx264", rate=rate)
        # The filter graph's clock: the source's, or the fps filter's 1/rate. Set before any
        # packet is muxed, so uneven (variable-rate) timestamps are kept exactly.
        clock = 1 / rate if self.plan.fps_cap is not None else self.video_in.time_base
        stream.time_base = stream.codec_context.time_base = clock
        width, height = self.plan.width, self.plan.height
        if self.facts.rotation in (90, 270):
            width, height = height, width
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(self.options.crf), "preset": self.options.preset}
        context = stream.codec_context
        # PyAV defaults encoders to slice threads, which x264 turns into its slower sliced
        # mode; AUTO gives x264's frame threads, as the ffmpeg command line does.
        context.thread_type = "AUTO"
        context.thread_count = self.options.threads
        context.color_range = _LIMITED_RANGE
        lut = None
        if self.facts.signal is not None:
            lut = write_cube(self.job.workdir / "tonemap.cube", self.facts.signal)
            context.color_primaries = context.color_trc = context.colorspace = _BT709
        else:  # SDR keeps its own colour description (see stages.video_graph)
            source = self.video_in.codec_context
            context.color_primaries = source.color_primaries
            context.color_trc = source.color_trc
            context.colorspace = source.colorspace
        self.graph = build_graph(
            self.video_in,
            width=self.plan.width,
            height=self.plan.height,
            rotation=self.facts.rotation,
            fps_cap=self.plan.fps_cap,
            lut=lut,
            threads=self.options.threads,
        )
        return stream

    def _video_packet(
        self, packet: av.Packet[Any], output: OutputContainer, video_out: Any
    ) -> None:
        if packet.dts is not None:
            self.tally.packets += 1
            self.cadence.add(packet.dts)
        if self.plan.copy_video:
            if packet.dts is not None:
                packet.stream = video_out
                output.mux(packet)
            if not self.stills.finished:
                self._decode(packet, self._offer)
            return
        self._decode(packet, lambda frame: self._filter(frame, output, video_out))

    def _decode(self, packet: av.Packet[Any] | None, each: Any) -> None:
        try:
            frames = self.video_in.codec_context.decode(packet)
        except av.error.EOFError:  # flushed already: some demuxers end each stream twice
            return
        except av.error.InvalidDataError:
            self.tally.corrupt += 1
            return
        for frame in frames:
            self.tally.frames += 1
            # Concealed damage (a frame the decoder patched up) is still shown, as players do.
            self.tally.corrupt += frame.is_corrupt
            each(frame)
        if self.plan.copy_video and self.stills.animation.finished:
            # Only the poster still looks: keyframes are all it takes.
            self.video_in.codec_context.skip_frame = "NONKEY"

    def _filter(self, frame: av.VideoFrame | None, output: OutputContainer, video_out: Any) -> None:
        assert self.graph is not None
        self.graph.vpush(frame)
        while True:
            try:
                filtered = self.graph.vpull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            self._offer(filtered)
            filtered.pict_type = PictureType.NONE  # the decoder's frame types are no orders
            output.mux(video_out.encode(filtered))

    def _offer(self, frame: av.VideoFrame) -> None:
        if not self.stills.finished and frame.time is not None:
            self.stills.offer(frame, frame.time - self.start)

    # --- audio --------------------------------------------------------------------------------

    def _add_audio(self, output: OutputContainer) -> Any:
        if self.audio_in is None:
            return None
        if self.plan.copy_audio:
            stream = output.add_stream_from_template(self.audio_in)
            stream.codec_context.codec_tag = "\0\0\0\0"  # AVI's tags mean nothing to MP4
            return stream
        rate = aac_sample_rate(self.audio_in.codec_context.sample_rate)
        encoder: Any = output.add_stream("aac", rate=rate, layout="stereo")
        encoder.bit_rate = self.options.audio_bitrate
        return encoder

    def _audio_packet(
        self, packet: av.Packet[Any], output: OutputContainer, audio_out: Any
    ) -> None:
        assert self.audio_in is not None
        if self.plan.copy_audio:
            if packet.dts is not None:
                packet.stream = audio_out
                output.mux(packet)
            return
        try:
            frames = self.audio_in.codec_context.decode(packet)
        except av.error.InvalidDataError:
            return  # a click of silence; the video counts, not the sound
        for frame in frames:
            frame.pts = None  # the encoder's resampler keeps its own sample clock
            output.mux(audio_out.encode(frame))

    # --- end ----------------------------------------------------------------------------------

    def _flush(self, output: OutputContainer, video_out: Any, audio_out: Any) -> None:
        # The demuxer's end-of-stream packets flush the decoders; after a read error they
        # never came (a flushed decoder just answers EOF).
        if not self.plan.copy_video:
            self._decode(None, lambda frame: self._filter(frame, output, video_out))
            self._filter(None, output, video_out)
        elif not self.stills.finished:
            self._decode(None, self._offer)
        self.stills.finish()  # a short clip's stills: encoded while the encoder drains
        if not self.plan.copy_video:
            output.mux(video_out.encode(None))
        if audio_out is not None and not self.plan.copy_audio:
            output.mux(audio_out.encode(None))

    def _cut_short(self, error: av.error.FFmpegError) -> None:
        if self.tally.frames == 0 and not self.plan.copy_video:
            raise BadMediaError(f"unreadable video data: {_reason(error)}") from error
        self.tally.warnings.append(f"the file ends in unreadable data ({_reason(error)})")

    def _check_tally(self) -> None:
        tally = self.tally
        if tally.frames == 0 and not self.plan.copy_video:
            raise BadMediaError("no decodable video frame in the file")
        if tally.corrupt > self.options.max_corrupt_fraction * max(tally.packets, 1):
            raise BadMediaError(
                f"too corrupt: {tally.corrupt} of {tally.packets} video packets are unreadable"
            )
        if tally.corrupt:
            tally.warnings.append(
                f"{tally.corrupt} of {tally.packets} video packets were corrupt "
                "(skipped or concealed)"
            )


@contextlib.contextmanager
def _mp4_output(path: Path) -> Iterator[OutputContainer]:
    """An MP4 with ``faststart``; when the body fails, no trailer is written and no file stays.

    Closing the Python file first makes PyAV skip the trailer, which with ``faststart`` would
    copy everything written so far once more: a cancelled job must stop within seconds.
    """
    file: BinaryIO = path.open("wb")
    output = av.open(file, mode="w", format="mp4", options={"movflags": "+faststart"})
    try:
        yield output
    except BaseException:
        file.close()
        with contextlib.suppress(av.error.FFmpegError, OSError, ValueError):
            output.close()
        path.unlink(missing_ok=True)
        raise
    output.close()
    file.close()


def _result(
    job: Job,
    options: TranscodeOptions,
    facts: VideoFacts,
    plan: Plan,
    run: VideoPass,
    video: Path,
) -> StageResult:
    renditions = [_video_rendition(video, facts, plan)]
    metadata = facts.metadata()
    metadata["variable_frame_rate"] = run.cadence.variable
    metadata["encoding"] = {
        "video": "copy" if plan.copy_video else "h264",
        "audio": _audio_action(facts, plan),
        "reasons": list(plan.reasons),
    }
    stills, placeholder = run.stills.result()
    renditions.extend(stills)
    if placeholder is not None:
        metadata["placeholder"] = {"thumbhash": placeholder}
    return StageResult(renditions=renditions, metadata=metadata, warnings=run.tally.warnings)


def _video_rendition(path: Path, facts: VideoFacts, plan: Plan) -> Rendition:
    """The ``video`` rendition, described from the file just written (which must open)."""
    with av.open(str(path)) as written:
        stream = written.streams.video[0]
        duration = round(written.duration / av.time_base, 3) if written.duration else None
        width, height = int(stream.width), int(stream.height)
        codec = stream.codec_context.codec.canonical_name
    if plan.copy_video and facts.rotation in (90, 270):
        width, height = height, width
    return Rendition(
        name="video",
        path=path,
        content_type="video/mp4",
        width=width,
        height=height,
        extra={"duration": duration, "codec": codec},
    )


def _audio_action(facts: VideoFacts, plan: Plan) -> str | None:
    if facts.audio_codec is None:
        return None
    return "copy" if plan.copy_audio else "aac"


def _reason(error: BaseException) -> str:
    if isinstance(error, av.error.FFmpegError):
        return str(error.strerror or error)
    return str(error)
