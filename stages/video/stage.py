"""The ``transcode`` stage: a video that plays in every browser, its poster, previews and facts.

One pass over the file (:mod:`stages.video.single_pass`) demuxes, decodes (threaded), filters
(:mod:`stages.video.graph`), encodes with libx264 and muxes an MP4 with ``faststart``, while
the poster and hover-preview frames are picked from the same decoded frames. Web-safe video is
copied, not re-encoded (see :mod:`stages.video.policy`), unless its timestamps cannot be copied
right (:mod:`stages.video.remux`). The MP4 is checked against what was read from the input before it
is returned (:mod:`stages.video.checks`). Only PyAV is used: no ffmpeg binary.
"""

from __future__ import annotations

from typing import Literal

import av
import av.error
from pydantic import Field

from stages.contract import (
    BadMediaError,
    Job,
    MediaKind,
    Rendition,
    RenditionInvalid,
    Stage,
    StageOptions,
    StageResult,
)
from stages.photo.render import DEFAULT_RENDITIONS, RenditionSpec
from stages.probe.stage import open_video
from stages.video.checks import CheckedVideo, verify_video
from stages.video.output import error_reason
from stages.video.policy import Plan, VideoFacts, plan_for, read_facts
from stages.video.remux import RemuxRefused
from stages.video.single_pass import VideoPass

Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
]


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
    version = "1.1.0"
    kinds = frozenset({MediaKind.VIDEO})
    requires = ("probe",)
    cpu_bound = True
    timeout = 3 * 3600.0
    Options = TranscodeOptions

    def run_sync(self, job: Job) -> StageResult:
        options = self.options
        assert isinstance(options, TranscodeOptions)
        source, facts = open_source(job)
        plan = plan_for(facts, max_short_side=options.max_short_side, max_fps=options.max_fps)
        job.log.info("transcode_plan", copy_video=plan.copy_video, reasons=plan.reasons)
        while True:
            with source:
                try:
                    return _transcode(job, source, facts, plan, options)
                except RemuxRefused as refused:
                    # Only a copied stream is refused, and it is encoded next: this loop ends.
                    job.log.warning("remux_refused", stream=refused.stream, reason=refused.reason)
                    plan = plan.encoding(refused.stream, str(refused))
            source = _open(job)  # a fresh read from the start


def open_source(job: Job) -> tuple[av.container.InputContainer, VideoFacts]:
    """The upload opened, and the facts of its streams; BadMediaError if no frame decodes."""
    source = _open(job)
    try:
        facts = read_facts(source, job.metadata)
        if facts.pixel_format == "unknown":
            # FFmpeg learns a stream's pixel format by decoding its first frames: none did.
            raise BadMediaError(
                f"no frame of the {facts.video_codec} video stream decodes: "
                "its data is damaged or missing"
            )
    except BaseException:
        source.close()
        raise
    return source, facts


def _open(job: Job) -> av.container.InputContainer:
    try:
        return open_video(job.original, str(job.metadata.get("format")))
    except (av.error.FFmpegError, KeyError) as error:
        raise BadMediaError(f"unreadable video: {error_reason(error)}") from error


def _transcode(
    job: Job,
    source: av.container.InputContainer,
    facts: VideoFacts,
    plan: Plan,
    options: TranscodeOptions,
) -> StageResult:
    """One pass, its output checked against what the pass kept of the input."""
    run = VideoPass(job, source, facts, plan, options)
    path = run.write(job.workdir / "video.mp4")
    width, height = (facts.width, facts.height) if plan.copy_video else (plan.width, plan.height)
    if facts.rotation in (90, 270) and not plan.copy_video:
        width, height = height, width  # encoded upright
    try:
        checked = verify_video(
            path,
            frames=run.expected_frames(),
            duration=run.kept.seconds if run.kept.start is not None else None,
            width=width,
            height=height,
        )
    except RenditionInvalid as invalid:
        path.unlink(missing_ok=True)
        if plan.copy_video:
            raise RemuxRefused("video", f"the copy failed its check ({invalid})") from invalid
        raise
    job.log.info(
        "video_checked",
        frames=checked.frames,
        duration=checked.duration,
        repaired_timestamps=run.repaired_timestamps,
        repeated_frames=run.tally.repeats,
    )
    return _result(facts, plan, run, checked)


def _result(facts: VideoFacts, plan: Plan, run: VideoPass, checked: CheckedVideo) -> StageResult:
    video = Rendition(
        name="video",
        path=run.job.workdir / "video.mp4",
        content_type="video/mp4",
        width=checked.width,
        height=checked.height,
        extra={"duration": checked.duration, "codec": checked.codec},
        checked=True,  # against the input, above: publish need not read it again
    )
    metadata = facts.metadata()
    metadata["variable_frame_rate"] = run.cadence.variable
    metadata["encoding"] = {
        "video": "copy" if plan.copy_video else "h264",
        "audio": _audio_action(facts, plan),
        "reasons": list(plan.reasons),
    }
    stills, placeholder = run.stills.result()
    if placeholder is not None:
        metadata["placeholder"] = {"thumbhash": placeholder}
    return StageResult(renditions=[video, *stills], metadata=metadata, warnings=run.tally.warnings)


def _audio_action(facts: VideoFacts, plan: Plan) -> str | None:
    if facts.audio_codec is None:
        return None
    return "copy" if plan.copy_audio else "aac"
