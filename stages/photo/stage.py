"""The ``thumbnail`` stage: web renditions, a placeholder and the facts of every photo.

One decode per photo (:mod:`stages.photo.decode`), renditions derived from it
(:mod:`stages.photo.render`), camera facts from EXIF (:mod:`stages.photo.exif`). The GPS
position goes to ``location``, which publish stores apart from the metadata, for the owner's
eyes only.

Every rendition is opened again and checked (:mod:`stages.photo.verify`) before it is
returned; when anything fails, the files this stage wrote are removed, so no partial rendition
is left for publish to find.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pyvips
from pydantic import Field, model_validator

from stages.contract import (
    BadMediaError,
    Job,
    MediaKind,
    Rendition,
    Stage,
    StageContext,
    StageError,
    StageOptions,
    StageResult,
)
from stages.photo.decode import (
    PhotoHeader,
    check_pixels,
    decode,
    decode_animation,
    read_header,
    vips_failure,
)
from stages.photo.exif import read_exif
from stages.photo.raw import develop, read_raw_header
from stages.photo.render import (
    DEFAULT_RENDITIONS,
    RenditionSpec,
    discard,
    largest_box,
    render_stills,
    save_animation,
)
from stages.photo.verify import verify_image
from stages.probe.raw import RAW_FORMATS

DEFAULT_MAX_PIXELS = 200_000_000


class ThumbnailOptions(StageOptions):
    renditions: tuple[RenditionSpec, ...] = Field(default=DEFAULT_RENDITIONS, min_length=1)
    placeholder: bool = True
    # Animated GIF and WebP get an animated WebP in the rendition named here (if it is WebP).
    animated_rendition: str | None = "thumb"
    max_animation_frames: int = Field(default=150, ge=2, le=2000)

    @model_validator(mode="after")
    def _unique_names(self) -> ThumbnailOptions:
        names = [spec.name for spec in self.renditions]
        if len(set(names)) != len(names):
            raise ValueError(f"rendition names must be unique, got {names}")
        return self


class ThumbnailStage(Stage):
    """Renditions, placeholder, colour and camera facts for every photo."""

    name = "thumbnail"
    version = "1.0.0"
    kinds = frozenset({MediaKind.IMAGE})
    requires = ("probe",)
    timeout = 180.0
    cpu_bound = True
    Options = ThumbnailOptions

    def __init__(self, options: StageOptions) -> None:
        super().__init__(options)
        self.max_pixels = DEFAULT_MAX_PIXELS

    async def start(self, context: StageContext) -> None:
        settings = context.settings
        self.max_pixels = int(getattr(settings, "max_pixels", DEFAULT_MAX_PIXELS))
        share_cores(int(getattr(settings, "cpu_threads", 0)) or None)

    def run_sync(self, job: Job) -> StageResult:
        options = self.options
        assert isinstance(options, ThumbnailOptions)
        image_format = job.metadata.get("format")
        if not isinstance(image_format, str):
            raise BadMediaError("the photo's format is unknown (the probe did not name it)")
        camera_raw = image_format in RAW_FORMATS  # LibRaw's, in stages.photo.raw
        header = (read_raw_header if camera_raw else read_header)(job.original, image_format)
        check_pixels(header, self.max_pixels)
        job.check_cancelled()
        written: list[Rendition] = []  # every file made here, removed again if anything fails
        try:
            box = largest_box(options.renditions)
            if camera_raw:
                decoded = develop(job.original, header, box, max_pixels=self.max_pixels)
            else:
                decoded = decode(job.original, header, box)
            job.check_cancelled()
            stills = render_stills(
                decoded.picture, options.renditions, job.workdir, placeholder=options.placeholder
            )
            renditions = written = stills.renditions
            if header.animated:
                job.check_cancelled()
                renditions = self._animate(job, header, renditions, options)
                written = [*stills.renditions, *renditions]
            for rendition in renditions:
                verify_image(
                    rendition.path,
                    content_type=rendition.content_type,
                    width=rendition.width,
                    height=rendition.height,
                )
            renditions = [dataclasses.replace(r, checked=True) for r in renditions]
        except BaseException as error:
            discard(written)
            if isinstance(error, pyvips.Error):
                # What libvips refuses past the header (a colour profile it cannot apply) is
                # this file's doing, unless our disk failed under it; encoding and writing the
                # renditions raise TransientError themselves (stages.photo.render).
                raise self._failure(error, job, header) from error
            raise
        metadata = photo_metadata(header)
        if stills.placeholder:
            metadata["placeholder"] = {"thumbhash": stills.placeholder}
        facts = read_exif(header.exif)
        if facts.taken_at:
            metadata["taken_at"] = facts.taken_at
        if facts.camera:
            metadata["camera"] = facts.camera
        if facts.location:
            metadata["location"] = facts.location
        job.log.debug("thumbnailed", renditions=[r.name for r in renditions])
        return StageResult(renditions=renditions, metadata=metadata, warnings=decoded.warnings)

    @staticmethod
    def _failure(error: pyvips.Error, job: Job, header: PhotoHeader) -> StageError:
        return vips_failure(
            error,
            job.original,
            doing=f"making renditions of the {header.label}",
            verdict=f"could not make renditions of the {header.label}",
        )

    def _animate(
        self,
        job: Job,
        header: PhotoHeader,
        renditions: list[Rendition],
        options: ThumbnailOptions,
    ) -> list[Rendition]:
        spec = next((s for s in options.renditions if s.name == options.animated_rendition), None)
        if spec is None or spec.format != "webp":
            return renditions
        strip, delays = decode_animation(
            job.original,
            header,
            spec.size,
            max_frames=options.max_animation_frames,
            max_pixels=self.max_pixels,
        )
        animated = save_animation(
            strip, job.workdir / f"{spec.name}-animated.webp", spec, delays_ms=delays
        )
        return [animated if r.name == spec.name else r for r in renditions]


def share_cores(cpu_threads: int | None) -> None:
    """Size libvips' own thread pool to the cores each of the worker's CPU threads has.

    The worker runs ``cpu_threads`` stages at once; if each libvips call also spread over every
    core, the threads would fight for them. Parallel photos use the cores better than parallel
    rows of one photo. An operator's ``VIPS_CONCURRENCY`` wins.
    """
    if cpu_threads is None or "VIPS_CONCURRENCY" in os.environ:
        return
    pyvips.concurrency_set(max(1, len(os.sched_getaffinity(0)) // cpu_threads))


def photo_metadata(header: PhotoHeader) -> dict[str, Any]:
    """The header facts an album shows: displayed size, colour, alpha, animation."""
    metadata: dict[str, Any] = {
        "width": header.width,
        "height": header.height,
        "colour_space": header.colour_space,
        "bit_depth": header.bit_depth,
        "has_alpha": header.has_alpha,
        "animated": header.animated,
    }
    if header.animated:
        metadata["frames"] = header.pages
    if header.icc_profile:
        metadata["icc_profile"] = header.icc_profile
    return metadata
