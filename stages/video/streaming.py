"""The ``hls`` stage: an adaptive HLS ladder for videos longer than ``min_duration``.

A stage of its own beside ``transcode``, not a branch of it: ``transcode`` mostly copies a
phone's H.264 without decoding it, so a ladder inside it would share no decode in the common
case, while on its own the ladder can fail or be deferred without costing the item its MP4,
and ``mediamill reprocess --stage hls`` backfills it for videos published before it existed.
Within the stage every rung is encoded from one decode of the input (:mod:`stages.video.ladder`).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from pydantic import Field

from mediamill_core.hls import HLS_CONTENT_TYPE
from stages.contract import Job, MediaKind, Rendition, Stage, StageOptions, StageResult
from stages.video.checks import verify_video
from stages.video.encoder import output_rate
from stages.video.ladder import (
    EncodedVariant,
    LadderPass,
    LadderSettings,
    ladder_bytes_bound,
    rungs_for,
)
from stages.video.playlist import Variant, audio_codec, avc1_codec, measure_variant, write_master
from stages.video.stage import Preset, open_source


class HlsOptions(StageOptions):
    # Shorter videos play well enough as the progressive MP4 alone.
    min_duration: float = Field(default=60.0, ge=0)
    segment_seconds: float = Field(default=6.0, ge=1, le=20)
    short_sides: tuple[int, ...] = Field(default=(1080, 720, 480, 360), min_length=1)
    crf: int = Field(default=23, ge=0, le=51)
    preset: Preset = "veryfast"
    max_fps: float = Field(default=60.0, gt=0, le=240)
    # Each rung's bit rate cap, per pixel of its frame: 6.2 Mb/s at 1080p, 2.8 at 720p.
    bits_per_pixel: float = Field(default=3.0, gt=0, le=50)
    audio_bitrate: int = Field(default=128_000, ge=32_000, le=512_000)
    threads: int = Field(default=0, ge=0, le=64, description="0: FFmpeg's count for all cores")


class HlsStage(Stage):
    """A master playlist and one fMP4 variant per rung, for long videos."""

    name = "hls"
    version = "1.0.0"
    kinds = frozenset({MediaKind.VIDEO})
    requires = ("probe",)
    reads_renditions = frozenset()
    optional = True  # the MP4 plays without it
    cpu_bound = True
    timeout = 3 * 3600.0
    Options = HlsOptions

    def scratch_bytes(self, job: Job) -> int:
        """The ladder's bound (every rung at its cap for the whole video): the upload's share
        holds the original and the MP4, not this as well."""
        options = self.options
        assert isinstance(options, HlsOptions)
        duration = _ladder_duration(job, options)
        width, height = job.metadata.get("width"), job.metadata.get("height")
        if duration is None or not isinstance(width, int) or not isinstance(height, int):
            return 0
        if width < 1 or height < 1:
            return 0  # not a size the ladder can be made at: run_sync says why
        return ladder_bytes_bound(
            width,
            height,
            duration,
            short_sides=options.short_sides,
            bits_per_pixel=options.bits_per_pixel,
            audio_bitrate=options.audio_bitrate,
        )

    def run_sync(self, job: Job) -> StageResult:
        options = self.options
        assert isinstance(options, HlsOptions)
        if _ladder_duration(job, options) is None:
            return StageResult()
        folder = job.workdir / "hls"
        source, facts = open_source(job)
        rungs = rungs_for(
            facts,
            short_sides=options.short_sides,
            max_fps=options.max_fps,
            bits_per_pixel=options.bits_per_pixel,
        )
        settings = LadderSettings(
            segment_seconds=options.segment_seconds,
            crf=options.crf,
            preset=options.preset,
            audio_bitrate=options.audio_bitrate,
            threads=options.threads,
        )
        try:
            with source:
                run = LadderPass(job, source, facts, rungs, settings)
                playlists = run.write(folder)
            variants = [
                _checked(run, variant, playlist)
                for variant, playlist in zip(run.variants, playlists, strict=True)
            ]
            master = write_master(folder, variants)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        top = variants[0]
        job.log.info("hls_ladder", variants=[variant.name for variant in variants])
        rendition = Rendition(
            name="hls",
            path=master,
            content_type=HLS_CONTENT_TYPE,
            width=top.width,
            height=top.height,
            extra={
                "segment_seconds": options.segment_seconds,
                "variants": [variant.summary() for variant in variants],
            },
            checked=True,  # every variant, below
        )
        return StageResult(renditions=[rendition], warnings=run.read.warnings)


def _checked(run: LadderPass, variant: EncodedVariant, playlist: Path) -> Variant:
    """One variant checked (its frames, size and first keyframe) and measured."""
    rung = variant.rung
    width, height = rung.plan.width, rung.plan.height
    if run.facts.rotation in (90, 270):
        width, height = height, width
    verify_video(playlist, frames=variant.frames, width=width, height=height)
    bandwidth, average, segments = measure_variant(playlist)
    codecs = avc1_codec(variant.video.codec_context.extradata)
    if variant.audio is not None:
        codecs = f"{codecs},{audio_codec()}"
    return Variant(
        name=rung.name,
        width=width,
        height=height,
        frame_rate=output_rate(run.facts, rung.plan),
        codecs=codecs,
        bandwidth=bandwidth,
        average_bandwidth=average,
        segments=segments,
    )


def _ladder_duration(job: Job, options: HlsOptions) -> float | None:
    """The video's duration when it is long enough for a ladder; None when it is not."""
    duration = job.metadata.get("duration")
    if isinstance(duration, bool) or not isinstance(duration, int | float):
        return None
    if not math.isfinite(duration):
        return None
    return float(duration) if duration >= options.min_duration else None
