"""Checking a rendition before it is published: it is what it claims, whole, at its size.

Renditions are served with year-long immutable caching, so a truncated or mislabelled file would
be wrong for good. Each check is our own output's, so a failure is :class:`RenditionInvalid`
(the job is retried), never the media's fault. Images are opened with the decoder of the type
they claim, and their data must be all there, proved as cheaply as the format allows:

- WebP (still or animated) states its length in the RIFF header, which the loader holds against
  the file's (and it walks every frame's chunk): the header is enough.
- JPEG states no length: it is decoded with ``fail_on="warning"``, shrunk by 8 in the DCT, so
  every byte of entropy-coded data is read while few pixels are made (about 2 ms for 1440 px).
- PNG must end with its ``IEND`` chunk, AVIF's top-level boxes must add up to the file and end
  with ``mdat``: decoding these would cost more than checking their structure (AV1: 75 ms).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pyvips

from stages.contract import BadMediaError, Rendition, RenditionInvalid
from stages.probe.isobmff import iter_boxes
from stages.probe.sniff import FORMATS, sniff
from stages.probe.stage import VIPS_LOADERS, vips_reason

# The image types checked in full (those renditions are made in), by the libvips loader of each.
# Any other image type (a GIF or an SVG from a plugin) is checked as a plain file: GIF decoders
# show a cut file without a word, and a check that passes cut files would only look like one.
_LOADERS = {
    "image/jpeg": VIPS_LOADERS["jpeg"],
    "image/webp": VIPS_LOADERS["webp"],
    "image/png": VIPS_LOADERS["png"],
    "image/avif": VIPS_LOADERS["avif"],
}
_LABELS = {sniffed.mime_type: sniffed.label for sniffed in FORMATS.values()}
_JPEG_SHRINK = 8
_PNG_END = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", 0xAE426082)
_UNBOUNDED = 1 << 62


def verify_rendition(rendition: Rendition) -> None:
    """Check one rendition by its content type; raises RenditionInvalid if it is not right."""
    content_type = rendition.content_type
    if content_type.startswith("image/"):
        verify_image(
            rendition.path,
            content_type=content_type,
            width=rendition.width,
            height=rendition.height,
        )
    elif content_type.startswith("video/"):
        # Loaded when a video is checked, not before: it brings in the demuxers and decoders.
        from stages.video.checks import verify_video

        verify_video(
            rendition.path,
            duration=rendition.extra.get("duration"),
            width=rendition.width,
            height=rendition.height,
        )
    else:
        _check_file(rendition.path)


def verify_image(path: Path, *, content_type: str, width: int | None, height: int | None) -> None:
    """Check that ``path`` holds a whole ``content_type`` image of ``width`` x ``height``.

    For an animation the height is a frame's. A size given as None is not checked.
    """
    _check_file(path)
    loader = _LOADERS.get(content_type)
    if loader is None:
        return
    label = _LABELS[content_type]
    _check_format(path, content_type, label)
    try:
        # The first page only: an animation's claimed height is a frame's.
        image: Any = pyvips.Operation.call(loader, str(path), access="sequential")
        actual = (int(image.width), int(image.height))
        if content_type == "image/jpeg":
            _decode_jpeg(path)
    except pyvips.Error as error:
        raise RenditionInvalid(
            f"{path.name} is not a whole {label}: {vips_reason(error, path)}"
        ) from error
    if content_type == "image/png":
        _check_png_end(path)
    elif content_type == "image/avif":
        _check_boxes_fill(path)
    claimed = (width, height)
    if any(want is not None and want != got for want, got in zip(claimed, actual, strict=True)):
        raise RenditionInvalid(
            f"{path.name} is {actual[0]} x {actual[1]} pixels, "
            f"not the {_size(width)} x {_size(height)} it claims"
        )


def _check_file(path: Path) -> int:
    try:
        size = path.stat().st_size
    except OSError as error:
        raise RenditionInvalid(f"{path.name} cannot be read: {error.strerror}") from error
    if size == 0:
        raise RenditionInvalid(f"{path.name} is empty")
    return size


def _check_format(path: Path, content_type: str, label: str) -> None:
    """The bytes' own signature, whatever the name or the claim says."""
    try:
        found = sniff(path)
    except BadMediaError as error:
        raise RenditionInvalid(f"{path.name} is not the {label} it claims: {error}") from error
    if found.mime_type != content_type:
        raise RenditionInvalid(f"{path.name} is {found.label}, not the {label} it claims")


def _decode_jpeg(path: Path) -> None:
    decoded: Any = pyvips.Image.jpegload(
        str(path), shrink=_JPEG_SHRINK, access="sequential", fail_on="warning"
    )
    # Any sink pulls every row through the decoder; a 1-pixel crop would not.
    decoded.copy_memory()


def _check_png_end(path: Path) -> None:
    with path.open("rb") as file:
        file.seek(-len(_PNG_END), 2)
        if file.read() != _PNG_END:
            raise RenditionInvalid(f"{path.name} is not a whole PNG: it does not end with IEND")


def _check_boxes_fill(path: Path) -> None:
    """The top-level boxes end exactly at the end of the file, the last one ``mdat``.

    libheif writes the picture data last, in ``mdat``: a file cut anywhere loses its end or ends
    before it.
    """
    size = path.stat().st_size
    last, end = b"", 0
    with path.open("rb") as file:
        # Walked with no end of its own, so a box that runs past the file's end shows as such
        # (libheif writes every box's size; a size-0 box, "to the end", would count as cut).
        for kind, _, box_end in iter_boxes(file, 0, _UNBOUNDED):
            last, end = kind, box_end
    if end != size:
        raise RenditionInvalid(
            f"{path.name} is not a whole AVIF: its boxes end at byte {end} of {size}"
        )
    if last != b"mdat":
        raise RenditionInvalid(f"{path.name} is not a whole AVIF: it ends before its picture data")


def _size(value: int | None) -> str:
    return "?" if value is None else str(value)
