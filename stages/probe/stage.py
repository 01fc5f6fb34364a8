"""The ``probe`` stage: what the upload is, decided from its bytes, and its basic facts.

The kind comes from the file's signature (:mod:`stages.probe.sniff`), never its name or
declared type; then the header is opened for real with the decoder later stages use (libvips
for images, LibRaw for camera RAW, FFmpeg through PyAV for videos), so a file that only looks
right fails here with a reason.
Nothing is decoded: a 100000 x 100000 PNG is reported from its header in milliseconds, and the
pixel limit is enforced by the stages that decode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import pillow_heif
import pyvips
from av.container import InputContainer
from av.video.stream import VideoStream

from stages.contract import ALL_KINDS, BadMediaError, Job, MediaKind, Stage, StageResult
from stages.probe.isobmff import top_level_types, video_rotation
from stages.probe.live import photo_identifier, video_identifier
from stages.probe.motion import embedded_video
from stages.probe.raw import RAW_FORMATS, probe_raw
from stages.probe.sniff import Sniffed, sniff

# Turn off libvips loaders not fit for untrusted input (ImageMagick, matload, FITS, ...) once
# for the whole process, at import, before any upload reaches libvips. The probe names the
# loader explicitly anyway; this guards the later stages' loads too.
pyvips.block_untrusted_set(True)
# No operation cache: every upload is a new file, and a cached load would keep its spool file
# open (and its disk space held) long after the job removed it.
pyvips.cache_set_max(0)


def _route_only_vips_warnings() -> None:
    """Hand Python's logging libvips' warnings and errors, not its INFO and DEBUG chatter.

    libvips reports the plan of every operation at INFO ("threadpool completed with 2 workers",
    "reduceh: 9 point mask", 26 lines a photo), and pyvips routes every level into Python:
    each line takes the GIL from a libvips worker thread, whose pipeline then waits while
    another photo's Python runs. GLib's own handler drops the rest (``G_MESSAGES_DEBUG=all``
    prints it). pyvips has no call for this; its handler is swapped for the same callback on
    fewer levels, and pyvips' exit hook removes that one.
    """
    handler = getattr(pyvips, "_log_handler_id", None)
    callback = getattr(pyvips, "_log_handler_cb", None)
    if not handler or callback is None:
        return
    flags = pyvips.GLogLevelFlags
    levels = (
        flags.LEVEL_WARNING
        | flags.LEVEL_CRITICAL
        | flags.LEVEL_ERROR
        | flags.FLAG_FATAL
        | flags.FLAG_RECURSION
    )
    pyvips.glib_lib.g_log_remove_handler(b"VIPS", handler)
    pyvips._log_handler_id = pyvips.glib_lib.g_log_set_handler(
        b"VIPS", levels, callback, pyvips.ffi.NULL
    )


_route_only_vips_warnings()

VIPS_LOADERS = {
    "jpeg": "jpegload",
    "png": "pngload",
    "webp": "webpload",
    "gif": "gifload",
    "heif": "heifload",
    "avif": "heifload",
    "tiff": "tiffload",
}
# FFmpeg demuxers, forced so FFmpeg cannot pick another one (an HLS playlist, say) itself.
_DEMUXERS = {"mp4": "mov", "mov": "mov", "webm": "matroska", "mkv": "matroska", "avi": "avi"}
_ANIMATED_FORMATS = {"gif", "webp"}  # several pages in a TIFF or HEIF are not an animation
_MESSAGE_LIMIT = 160


class ProbeStage(Stage):
    """Decides the media kind and format from the bytes and reads dimensions and duration."""

    name = "probe"
    version = "1.2.0"  # 1.1: motion photos declared in the XMP; 1.2: Live Photo identifiers
    kinds = ALL_KINDS
    requires = ()
    optional = False
    timeout = 60.0
    cpu_bound = True

    def run_sync(self, job: Job) -> StageResult:
        sniffed = sniff(job.original)
        job.check_cancelled()
        if sniffed.kind is MediaKind.IMAGE:
            facts = probe_image(job.original, sniffed)
        else:
            facts = probe_video(job.original, sniffed)
        job.check_cancelled()
        metadata = {
            "kind": sniffed.kind.value,
            "format": sniffed.format,
            "mime_type": sniffed.mime_type,
            **facts,
        }
        job.log.debug("probed", **metadata)
        return StageResult(kind=sniffed.kind, metadata=metadata)


def probe_image(path: Path, sniffed: Sniffed) -> dict[str, Any]:
    """Width, height, pages and orientation from the image header, through libvips."""
    if sniffed.format in RAW_FORMATS:  # camera RAW: through LibRaw, as it will be decoded
        return probe_raw(path, sniffed.label)
    try:
        image: Any = pyvips.Operation.call(
            VIPS_LOADERS[sniffed.format], str(path), access="sequential"
        )
        width, height = int(image.width), int(image.height)
        pages = _vips_int(image, "n-pages", 1)
        orientation = _vips_int(image, "orientation", 1)
        xmp = image.get("xmp-data") if image.get_typeof("xmp-data") != 0 else None
        exif = image.get("exif-data") if image.get_typeof("exif-data") != 0 else None
    except pyvips.Error as error:
        if sniffed.format != "heif":
            raise _corrupt(sniffed, vips_reason(error, path)) from error
        return _heif_header(path, sniffed, error)
    return {
        "width": width,
        "height": height,
        "pages": pages,
        "animated": sniffed.format in _ANIMATED_FORMATS and pages > 1,
        "orientation": orientation,
        **_motion_photo(xmp),
        "content_identifier": photo_identifier(exif),
    }


def _motion_photo(xmp: bytes | None) -> dict[str, Any]:
    """``motion_photo``: the appended video the XMP declares (the ``motion`` stage checks it),
    or None, so that "not one" differs from an item probed before motion photos were read."""
    video = embedded_video(xmp)
    return {"motion_photo": video.as_metadata() if video is not None else None}


def _vips_int(image: Any, field: str, default: int) -> int:
    return int(image.get(field)) if image.get_typeof(field) != 0 else default


def _heif_header(path: Path, sniffed: Sniffed, vips_error: pyvips.Error) -> dict[str, Any]:
    """libheif through pillow-heif, for HEIF variants libvips' build refuses."""
    try:
        heif: Any = pillow_heif.open_heif(path, convert_hdr_to_8bit=False)
        width, height = heif.size
        pages = len(heif)
        xmp = heif.info.get("xmp")
        exif = heif.info.get("exif")
    except (ValueError, RuntimeError, OSError) as error:
        raise _corrupt(sniffed, vips_reason(vips_error, path)) from error
    return {
        "width": int(width),
        "height": int(height),
        "pages": pages,
        "animated": False,
        "orientation": 1,  # libheif applies the irot/imir transforms itself
        **_motion_photo(xmp),
        "content_identifier": photo_identifier(exif),
    }


def probe_video(path: Path, sniffed: Sniffed) -> dict[str, Any]:
    """Codec, dimensions, frame rate, duration and rotation from the container, through PyAV."""
    try:
        with open_video(path, sniffed.format) as container:
            facts = _video_facts(container, sniffed)
    except av.error.FFmpegError as error:
        raise _missing_moov(path, sniffed) or _corrupt(sniffed, error.strerror) from error
    if sniffed.format in ("mp4", "mov"):
        with path.open("rb") as file:
            facts["rotation"] = video_rotation(file, path.stat().st_size)
    return facts


def open_video(path: Path, video_format: str) -> InputContainer:
    """Open a video with the demuxer its sniffed format names, never one FFmpeg guesses."""
    return av.open(str(path), format=_DEMUXERS[video_format], metadata_errors="ignore")


def _video_facts(container: InputContainer, sniffed: Sniffed) -> dict[str, Any]:
    # Cover art in an M4A or MKV shows up as a one-frame "video" stream: it does not count.
    videos = [
        stream
        for stream in container.streams.video
        if not stream.disposition & av.stream.Disposition.attached_pic
    ]
    audios = list(container.streams.audio)
    if not videos:
        only = ": the file holds only audio" if audios else ""
        raise BadMediaError(f"no video stream in the {sniffed.label} file{only}")
    video = videos[0]
    if not video.width or not video.height:
        raise _corrupt(sniffed, "the video stream has no picture size")
    rate = video.average_rate or video.guessed_rate
    return {
        "width": int(video.width),
        "height": int(video.height),
        "duration": _duration(container, video),
        # Canonical codec names ("av1", "mp3"), not the decoder's ("libdav1d", "mp3float").
        "video_codec": video.codec_context.codec.canonical_name,
        "pixel_format": video.codec_context.pix_fmt,
        "fps": round(float(rate), 3) if rate else None,
        "rotation": 0,
        "audio_codec": audios[0].codec_context.codec.canonical_name if audios else None,
        # A Live Photo's MOV: the still it belongs to carries the same (see stages.probe.live).
        "content_identifier": video_identifier(container.metadata),
    }


def _duration(container: InputContainer, video: VideoStream) -> float | None:
    """Seconds, as players show it (the container's); else the video track's."""
    if container.duration:
        return round(container.duration / av.time_base, 3)
    if video.duration and video.time_base:
        return round(float(video.duration * video.time_base), 3)
    return None


def _missing_moov(path: Path, sniffed: Sniffed) -> BadMediaError | None:
    """The error for the commonest reason an MP4/MOV fails to open: it has no moov box."""
    if sniffed.format not in ("mp4", "mov"):
        return None
    with path.open("rb") as file:
        boxes = top_level_types(file, path.stat().st_size)
    if b"moov" in boxes:
        return None
    return BadMediaError(
        f"truncated {sniffed.label} without a moov box (the upload or the recording was cut short)"
    )


def _corrupt(sniffed: Sniffed, reason: str | None) -> BadMediaError:
    return BadMediaError(f"corrupt or truncated {sniffed.label}: {reason or 'unreadable header'}")


def vips_reason(error: pyvips.Error, path: Path) -> str:
    """The loader's own verdict from the libvips error text, without the file's path.

    libvips keeps one error buffer per process and pyvips reports all of it, so the text can
    start with earlier, harmless lines ("/spool/x.heic: bad seek to 1024"), even about other
    jobs' files: the last line, the newest, is the verdict on this file. Another thread may
    also have cleared the buffer first, leaving only pyvips' own "unable to call jpegload",
    which says nothing about the file.
    """
    detail = str(error.detail or error.message).replace(str(path), "the file")
    lines = [
        line.strip()
        for line in detail.splitlines()
        if line.strip() and not line.strip().startswith("unable to call ")
    ]
    reason = lines[-1] if lines else "the decoder could not read it"
    domain, _, rest = reason.partition(": ")
    if rest and domain.replace("_", "").isalnum():  # "VipsJpeg: ", "heif: ", "icc_transform: "
        reason = rest
    return reason[:_MESSAGE_LIMIT]
