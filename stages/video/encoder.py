"""The H.264 encoder every video output uses: its clock, size, threads and colour description."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from av.container import OutputContainer
from av.video.stream import VideoStream

from stages.video.policy import Plan, VideoFacts

_BT709 = 1  # FFmpeg's enum value for BT.709 primaries, transfer and matrix alike
_LIMITED_RANGE = 1


def output_rate(facts: VideoFacts, plan: Plan) -> Fraction:
    """The encoded frame rate: the input's, or the cap."""
    if plan.fps_cap is not None:
        return Fraction(plan.fps_cap).limit_denominator(1001)
    return facts.rate or Fraction(30)


def add_h264(
    output: OutputContainer,
    video_in: VideoStream,
    facts: VideoFacts,
    plan: Plan,
    *,
    options: Mapping[str, str],
    threads: int,
    tonemapped: bool,
) -> Any:
    """A libx264 stream in ``output`` for frames of ``plan``'s size from the filter graph."""
    rate = output_rate(facts, plan)
    stream: Any = output.add_stream("libx264", rate=rate)
    # The filter graph's clock: the source's, or the fps filter's 1/rate. Set before any
    # packet is muxed, so uneven (variable-rate) timestamps are kept exactly.
    clock = 1 / rate if plan.fps_cap is not None else video_in.time_base
    stream.time_base = stream.codec_context.time_base = clock
    width, height = plan.width, plan.height
    if facts.rotation in (90, 270):
        width, height = height, width
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.options = dict(options)
    context = stream.codec_context
    # PyAV defaults encoders to slice threads, which x264 turns into its slower sliced
    # mode; AUTO gives x264's frame threads, as the ffmpeg command line does.
    context.thread_type = "AUTO"
    context.thread_count = threads
    context.color_range = _LIMITED_RANGE
    if tonemapped:
        context.color_primaries = context.color_trc = context.colorspace = _BT709
    else:  # SDR keeps its own colour description (see stages.video.graph)
        source = video_in.codec_context
        context.color_primaries = source.color_primaries
        context.color_trc = source.color_trc
        context.colorspace = source.colorspace
    return stream
