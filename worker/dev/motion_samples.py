"""Motion photos made as Android cameras make them, for ``mediamill demo`` and for tests.

A still encoded with its XMP (pyvips' ``jpegsave`` writes the packet as the APP1 segment a
camera writes; pillow-heif writes a HEIF's XMP item), then an MP4 appended to the file: bare
after a JPEG, in an ``mpvd`` box after a HEIC, as Google's Motion Photo 1.0 lays them out.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Literal

import pillow_heif
import pyvips

from worker.dev.samples import picture, write_video

Form = Literal["motion_photo", "micro_video"]
_MPVD_HEADER = 8  # size and type of the box a HEIC motion photo wraps its video in


def motion_photo_xmp(
    video_length: int,
    *,
    form: Form = "motion_photo",
    primary_padding: int = 0,
    offset: int | None = None,
    timestamp_us: int = 500_000,
) -> bytes:
    """The XMP packet a camera writes: a Container directory, or the older MicroVideo fields.

    ``offset`` overrides what the packet states (``Item:Length``, or ``MicroVideoOffset``), to
    make a file whose claim is wrong.
    """
    stated = video_length if offset is None else offset
    if form == "micro_video":
        camera = (
            f'GCamera:MicroVideo="1" GCamera:MicroVideoVersion="1" '
            f'GCamera:MicroVideoOffset="{stated}" '
            f'GCamera:MicroVideoPresentationTimestampUs="{timestamp_us}"'
        )
        directory = ""
    else:
        camera = (
            f'GCamera:MotionPhoto="1" GCamera:MotionPhotoVersion="1" '
            f'GCamera:MotionPhotoPresentationTimestampUs="{timestamp_us}"'
        )
        directory = (
            "<Container:Directory><rdf:Seq>"
            '<rdf:li rdf:parseType="Resource"><Container:Item Item:Mime="image/jpeg" '
            f'Item:Semantic="Primary" Item:Length="0" Item:Padding="{primary_padding}"/></rdf:li>'
            '<rdf:li rdf:parseType="Resource"><Container:Item Item:Mime="video/mp4" '
            f'Item:Semantic="MotionPhoto" Item:Length="{stated}" Item:Padding="0"/></rdf:li>'
            "</rdf:Seq></Container:Directory>"
        )
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 5.1.0-jc003">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" '
        'xmlns:GCamera="http://ns.google.com/photos/1.0/camera/" '
        'xmlns:Container="http://ns.google.com/photos/1.0/container/" '
        'xmlns:Item="http://ns.google.com/photos/1.0/container/item/" '
        f"{camera}>{directory}</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="w"?>'
    ).encode()


def write_motion_photo(
    path: Path,
    width: int = 320,
    height: int = 240,
    *,
    form: Form = "motion_photo",
    heic: bool = False,
    video: bytes | None = None,
    offset: int | None = None,
    seconds: float = 1.0,
) -> Path:
    """A motion photo: a JPEG (or a HEIC) with the XMP, and ``video`` (by default a short MP4
    of the same scene, with sound) appended; ``offset`` states a wrong position (see above)."""
    if video is None:
        clip = write_video(
            path.with_suffix(".clip.mp4"), width=width, height=height, seconds=seconds
        )
        video = clip.read_bytes()
        clip.unlink()
    if heic:
        appended = struct.pack(">I4s", _MPVD_HEADER + len(video), b"mpvd") + video
        xmp = motion_photo_xmp(len(video), form=form, primary_padding=_MPVD_HEADER, offset=offset)
        heif: Any = pillow_heif.from_pillow(picture(width, height))
        heif.save(path, quality=60, xmp=xmp)
    else:
        appended = video
        xmp = motion_photo_xmp(len(video), form=form, offset=offset)
        still = pyvips.Image.new_from_memory(
            picture(width, height).tobytes(), width, height, 3, "uchar"
        ).copy()
        still.set_type(pyvips.GValue.blob_type, "xmp-data", xmp)
        still.jpegsave(str(path), Q=85)
    with path.open("ab") as file:
        file.write(appended)
    return path
