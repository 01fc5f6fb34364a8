"""One read of a video: each stream copied or encoded into the MP4, the stills fed on the way.

Errors are told apart by where they happen. The demuxer and the decoders read the upload: what
they refuse is damage, tolerated up to a limit (packets skipped with a warning; a file that
ends in unreadable data keeps what came before). Everything after them is ours: the filter
graph and the encoders raise as the bugs they would be, and writing the MP4 fails as a
``TransientError`` (:mod:`stages.video.output`). Copied streams go through
:mod:`stages.video.remux`, which keeps every packet or refuses the copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import av.error
from av.audio.stream import AudioStream
from av.container import InputContainer, OutputContainer
from av.video.frame import PictureType
from av.video.stream import VideoStream

from stages.contract import BadMediaError, Job
from stages.video.checks import Span, frame_period
from stages.video.encoder import add_h264
from stages.video.frame_times import FrameCadence, FrameClock
from stages.video.graph import build_graph
from stages.video.output import error_reason, mp4_output, writing
from stages.video.policy import Plan, VideoFacts, aac_sample_rate
from stages.video.poster import VideoStills
from stages.video.remux import CopiedTimestamps, RemuxRefused, StreamKind
from stages.video.tonemap import write_cube

if TYPE_CHECKING:
    from stages.video.stage import TranscodeOptions

_CHECK_EVERY = 8  # packets between cancellation checks: a few frames, well under a second
# The header's duration also counts audio, and edit lists shift a stream by a few frames: a
# video is cut short when it misses more than a second and 5 % of what the header states.
_SHORT_BY = 1.0
_SHORT_SHARE = 0.05


@dataclass(slots=True)
class Tally:
    """What the pass saw: video packets, corrupt ones, frames decoded and dropped as repeats."""

    packets: int = 0
    corrupt: int = 0
    frames: int = 0
    repeats: int = 0  # decoded frames whose timestamp did not advance: dropped, as ffmpeg does
    cut_short: bool = False  # the demuxer failed before the end
    warnings: list[str] = field(default_factory=list)


def read_packets(
    source: InputContainer,
    wanted: list[Any],
    cut_short: Callable[[av.error.FFmpegError], None],
) -> Iterator[av.Packet[Any]]:
    """The input's packets; a demuxer error ends the file (input damage, tolerated), told to
    ``cut_short``, which may raise instead."""
    packets = source.demux(wanted)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as error:
            cut_short(error)
            return
        yield packet


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
        self.period = frame_period(facts.rate)
        # What went into the output, from the input's side: the check's expectations.
        self.kept_frames = 0
        self.kept = Span()
        self.clock = FrameClock()
        self._last_pts: int | None = None
        self.timing: dict[StreamKind, CopiedTimestamps] = {}

    def write(self, path: Path) -> Path:
        """Write the MP4 to ``path``; on any failure (or cancellation) no file is left."""
        with self.stills, mp4_output(path) as output:
            video_out = self._add_video(output)
            audio_out = self._add_audio(output)
            wanted = [self.video_in] + ([self.audio_in] if audio_out is not None else [])
            for count, packet in enumerate(self._read(wanted)):
                if count % _CHECK_EVERY == 0:
                    self.job.check_cancelled()
                if packet.stream_index == self.video_in.index:
                    self._video_packet(packet, output, video_out)
                elif audio_out is not None:
                    self._audio_packet(packet, output, audio_out)
            self.job.check_cancelled()
            self._flush(output, video_out, audio_out)
            self._check_tally()
        return path

    def expected_frames(self) -> int:
        """The video frames the output must hold: every one kept, or the rate cap's share."""
        if self.plan.fps_cap is not None and not self.plan.copy_video:
            return round(self.kept.seconds * self.plan.fps_cap)
        return self.kept_frames

    @property
    def repaired_timestamps(self) -> int:
        return sum(timing.repaired for timing in self.timing.values())

    def _read(self, wanted: list[Any]) -> Iterator[av.Packet[Any]]:
        return read_packets(self.source, wanted, self._cut_short)

    # --- video --------------------------------------------------------------------------------

    def _add_video(self, output: OutputContainer) -> Any:
        if self.plan.copy_video:
            self.timing["video"] = CopiedTimestamps(
                "video",
                rate=self.facts.rate,
                time_base=self.video_in.time_base,
                reorders=self.facts.reorders,
                keyframe_first=True,
            )
            return output.add_stream_from_template(self.video_in)
        lut = None
        if self.facts.signal is not None:
            with writing("the tone-mapping table"):
                lut = write_cube(self.job.workdir / "tonemap.cube", self.facts.signal)
        stream = add_h264(
            output,
            self.video_in,
            self.facts,
            self.plan,
            options={"crf": str(self.options.crf), "preset": self.options.preset},
            threads=self.options.threads,
            tonemapped=lut is not None,
        )
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
        if packet.size:  # not the demuxer's end-of-stream marker
            self.tally.packets += 1
            if packet.dts is not None:
                self.cadence.add(packet.dts)
        if not self.plan.copy_video:
            self._decode(packet, lambda frame: self._encode(frame, output, video_out))
            return
        if not self.stills.finished:  # before the muxer takes the packet over
            self._decode(packet, self._offer)
        if packet.size:
            self._copy(output, self.timing["video"].add(packet), video_out, "video")

    def _decode(self, packet: av.Packet[Any] | None, each: Any) -> None:
        try:
            frames = self.video_in.codec_context.decode(packet)
        except av.error.EOFError:  # flushed already: some demuxers end each stream twice
            return
        except av.error.FFmpegError:  # the decoder refuses this packet: input damage
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

    def _encode(self, frame: av.VideoFrame, output: OutputContainer, video_out: Any) -> None:
        frame.pts = self.clock.time_of(frame)
        if frame.pts is not None:
            # Two frames at one time cannot both be shown, and MP4 cannot store them.
            if self._last_pts is not None and frame.pts <= self._last_pts:
                self.tally.repeats += 1
                return
            self._last_pts = frame.pts
            clock = frame.time_base or self.video_in.time_base
            if clock is not None:
                length = frame.duration * clock if frame.duration else self.period
                self.kept.add(float(frame.pts * clock), float(length))
        self.kept_frames += 1
        self._filter(frame, output, video_out)

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
            self._mux(output, video_out.encode(filtered))

    def _offer(self, frame: av.VideoFrame) -> None:
        if not self.stills.finished and frame.time is not None:
            self.stills.offer(frame, frame.time - self.start)

    # --- audio --------------------------------------------------------------------------------

    def _add_audio(self, output: OutputContainer) -> Any:
        if self.audio_in is None:
            return None
        if self.plan.copy_audio:
            self.timing["audio"] = CopiedTimestamps(
                "audio",
                rate=None,
                time_base=self.audio_in.time_base,
                reorders=False,
                keyframe_first=False,
            )
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
            if packet.size:
                self._copy(output, self.timing["audio"].add(packet), audio_out, "audio")
            return
        try:
            frames = self.audio_in.codec_context.decode(packet)
        except av.error.FFmpegError:
            return  # a click of silence (or the end, flushed twice); the video counts
        for frame in frames:
            frame.pts = None  # the encoder's resampler keeps its own sample clock
            self._mux(output, audio_out.encode(frame))

    # --- the output ---------------------------------------------------------------------------

    def _copy(
        self,
        output: OutputContainer,
        packets: Iterable[av.Packet[Any]],
        stream: Any,
        kind: StreamKind,
    ) -> None:
        for packet in packets:
            if kind == "video":
                self.kept_frames += 1
                self.kept.add_packet(packet, self.period)
            packet.stream = stream
            with writing("the video"):
                try:
                    output.mux(packet)
                except av.error.FFmpegError as error:
                    if isinstance(error, OSError):  # our disk, whatever the packet
                        raise
                    reason = f"the MP4 muxer refused a packet ({error_reason(error)})"
                    raise RemuxRefused(kind, reason) from error

    def _mux(self, output: OutputContainer, packets: list[av.Packet[Any]]) -> None:
        with writing("the video"):
            output.mux(packets)

    def _flush(self, output: OutputContainer, video_out: Any, audio_out: Any) -> None:
        # The demuxer's end-of-stream packets flush the decoders; after a read error they
        # never came (a flushed decoder just answers EOF).
        if not self.plan.copy_video:
            self._decode(None, lambda frame: self._encode(frame, output, video_out))
            self._filter(None, output, video_out)
        else:
            self._copy(output, self.timing["video"].end(), video_out, "video")
            if not self.stills.finished:
                self._decode(None, self._offer)
        if audio_out is not None and self.plan.copy_audio:
            self._copy(output, self.timing["audio"].end(), audio_out, "audio")
        self.stills.finish()  # a short clip's stills: encoded while the encoder drains
        if not self.plan.copy_video:
            self._mux(output, video_out.encode(None))
        if audio_out is not None and not self.plan.copy_audio:
            self._mux(output, audio_out.encode(None))

    # --- damage -------------------------------------------------------------------------------

    def _cut_short(self, error: av.error.FFmpegError) -> None:
        if self.tally.frames == 0 and not self.plan.copy_video:
            raise BadMediaError(f"unreadable video data: {error_reason(error)}") from error
        self.tally.cut_short = True
        self.tally.warnings.append(f"the file ends in unreadable data ({error_reason(error)})")

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
        stated, kept = self.facts.duration, self.kept.seconds
        # An MP4 cut inside its media data just ends, without a read error.
        if stated and not tally.cut_short and stated - kept > max(_SHORT_BY, _SHORT_SHARE * stated):
            tally.warnings.append(
                f"the video ends after {kept:.1f} s of the {stated:.1f} s its header states"
            )
