"""The ``motion`` stage: a motion photo's appended video, made a ``motion`` rendition.

The probe reads the photo's XMP and states the video it declares (``motion_photo``, see
:mod:`stages.probe.motion`); this stage copies those bytes out (:mod:`stages.motion.extract`)
and hands them to the ``transcode`` stage's own code, as a video upload, with no poster or
preview (the still is the poster). A photo without a declared video costs nothing here. A
declared video that is missing, misplaced or unplayable leaves the still alone, with a warning:
the photo is still good.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import Field

from stages.contract import (
    BadMediaError,
    Job,
    MediaKind,
    Stage,
    StageOptions,
    StageResult,
)
from stages.motion.extract import Extracted, VideoUnusable, extract
from stages.photo.render import RenditionSpec
from stages.probe.motion import EmbeddedVideo
from stages.probe.raw import RAW_FORMATS
from stages.probe.sniff import sniff
from stages.probe.stage import probe_image
from stages.video.stage import Preset, TranscodeOptions, TranscodeStage

RENDITION = "motion"


class MotionOptions(StageOptions):
    """The transcode's options that matter for a clip of a few seconds."""

    max_short_side: int = Field(default=720, ge=144, le=4320)
    crf: int = Field(default=23, ge=0, le=51)
    preset: Preset = "veryfast"
    max_fps: float = Field(default=60.0, gt=0, le=240)
    audio_bitrate: int = Field(default=128_000, ge=32_000, le=512_000)
    threads: int = Field(default=0, ge=0, le=64, description="0: FFmpeg's count for all cores")
    max_corrupt_fraction: float = Field(default=0.2, ge=0, le=1)
    # Seconds of clip at most: phones record 1.5-3 s; the timeout below is sized for this.
    max_seconds: float = Field(default=60.0, gt=0, le=600)


class _ClipOptions(TranscodeOptions):
    """The transcode without its stills: the photo's own renditions are the clip's poster."""

    renditions: tuple[RenditionSpec, ...] = ()
    preview_anim: RenditionSpec | None = None


class MotionStage(Stage):
    """The video of an Android motion photo (JPEG or HEIC), as a web-ready ``motion`` MP4."""

    name = "motion"
    version = "1.0.0"
    kinds = frozenset({MediaKind.IMAGE})
    requires = ("probe",)
    reads_renditions = frozenset()
    cpu_bound = True
    timeout = 900.0
    Options = MotionOptions

    def run_sync(self, job: Job) -> StageResult:
        if "motion_photo" in job.metadata:
            stated = job.metadata["motion_photo"]
        elif job.metadata.get("format") in RAW_FORMATS:
            stated = None  # a RAW carries no appended video: not worth opening in LibRaw again
        else:  # probed before motion photos were read (a reprocess): read the claim now
            stated = probe_image(job.original, sniff(job.original)).get("motion_photo")
        if not stated:
            return StageResult()
        declared = EmbeddedVideo.from_metadata(stated)
        workdir = job.workdir / RENDITION
        workdir.mkdir(parents=True, exist_ok=True)
        options = self.options
        assert isinstance(options, MotionOptions)
        try:
            clip = extract(job, declared, workdir / "embedded", max_seconds=options.max_seconds)
        except VideoUnusable as unusable:
            return _still_only(job, unusable)
        try:
            return self._transcode(job, declared, clip)
        except BadMediaError as error:
            return _still_only(job, error)
        finally:
            clip.path.unlink(missing_ok=True)  # its spool space, back before publish

    def _transcode(self, job: Job, declared: EmbeddedVideo, clip: Extracted) -> StageResult:
        options = self.options
        assert isinstance(options, MotionOptions)
        settings = options.model_dump(exclude={"retry", "max_seconds"})
        transcode = TranscodeStage(_ClipOptions(**settings))
        as_video = dataclasses.replace(
            job,
            original=clip.path,
            workdir=clip.path.parent,
            kind=MediaKind.VIDEO,
            metadata={"kind": "video", "format": clip.sniffed.format, **clip.facts},
            options=transcode.options,
        )
        made = transcode.run_sync(as_video)
        [video] = [r for r in made.renditions if r.name == "video"]
        motion = dataclasses.replace(video, name=RENDITION)
        facts = made.metadata
        metadata: dict[str, Any] = {
            "form": declared.form,
            "duration": video.extra.get("duration"),
            "width": video.width,
            "height": video.height,
            "video_codec": facts.get("video_codec"),
            "audio_codec": facts.get("audio_codec"),
            "fps": facts.get("fps"),
            "encoding": facts.get("encoding"),
        }
        if declared.presentation_timestamp_us is not None:
            # Where in the clip the still was taken: players start or rest on that frame.
            metadata["still_at"] = round(declared.presentation_timestamp_us / 1e6, 6)
        job.log.info("motion_photo_video", **metadata)
        warnings = [f"in its video: {text}" for text in made.warnings]
        return StageResult(renditions=[motion], metadata={"motion": metadata}, warnings=warnings)


def _still_only(job: Job, reason: Exception) -> StageResult:
    job.log.warning("motion_photo_video_unusable", reason=str(reason))
    return StageResult(
        warnings=[f"the motion photo's video was left out: {reason}; the still is kept"]
    )
