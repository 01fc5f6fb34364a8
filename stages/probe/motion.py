"""Motion photos: where a photo's XMP says a video is appended to it, read without the video.

Two Google forms are read. The current one (Motion Photo 1.0, Pixel and most Android cameras
since 2021) lists the file's parts in a ``Container:Directory``: the primary image first, then
each appended item with its ``Item:Semantic``, ``Item:Length`` and ``Item:Padding``; the video
is the item whose semantic is ``MotionPhoto``, found by walking back from the end of the file
over the items after it. The older MicroVideo form (``GCamera:MicroVideoOffset``, Pixel 2-5
"MVIMG" files) gives the video's distance from the end of the file, the video running to the end.

The packet is parsed with the standard library's expat with every DTD refused: XMP never has
one, and without a DTD no entity can be declared, so neither entity expansion ("billion laughs")
nor an external entity can happen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from xml.parsers import expat

CAMERA_NS = "http://ns.google.com/photos/1.0/camera/"
CONTAINER_NS = "http://ns.google.com/photos/1.0/container/"
ITEM_NS = "http://ns.google.com/photos/1.0/container/item/"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_SEPARATOR = "\x1f"  # between namespace and local name in expat's names: never in either
_MAX_PACKET = 1024 * 1024  # a JPEG's XMP segment holds 64 KiB; a HEIF's item, a little more


class XmpRefused(ValueError):
    """The XMP packet is not well-formed XML, or it carries a DTD."""


@dataclass(frozen=True, slots=True)
class EmbeddedVideo:
    """What the XMP declares about the appended video; nothing here is checked against the file.

    ``offset_from_end``: bytes from the video's first byte to the end of the file;
    ``length``: the video's bytes (``None``: up to the end, the MicroVideo form).
    """

    form: str  # "motion_photo" (Container:Directory) or "micro_video" (MicroVideoOffset)
    offset_from_end: int
    length: int | None
    mime: str | None
    presentation_timestamp_us: int | None

    def as_metadata(self) -> dict[str, Any]:
        return {
            "form": self.form,
            "offset_from_end": self.offset_from_end,
            "length": self.length,
            "mime": self.mime,
            "presentation_timestamp_us": self.presentation_timestamp_us,
        }

    @classmethod
    def from_metadata(cls, data: Any) -> EmbeddedVideo:
        """Back from the probe's metadata (a reprocess reads it from the stored item)."""
        return cls(
            form=str(data["form"]),
            offset_from_end=int(data["offset_from_end"]),
            length=None if data.get("length") is None else int(data["length"]),
            mime=data.get("mime"),
            presentation_timestamp_us=data.get("presentation_timestamp_us"),
        )


@dataclass(slots=True)
class _Item:
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Packet:
    """What the walk over the packet collected: camera properties, the directory's items."""

    camera: dict[str, str] = field(default_factory=dict)
    items: list[_Item] = field(default_factory=list)


def embedded_video(xmp: bytes | None) -> EmbeddedVideo | None:
    """The video the packet declares, or None (no XMP, not a motion photo, or no usable claim).

    A packet that is not XML is no claim at all: the photo is still a photo.
    """
    if not xmp:
        return None
    try:
        packet = _walk(xmp)
    except XmpRefused:
        return None
    return _from_directory(packet) or _from_micro_video(packet)


def _from_directory(packet: _Packet) -> EmbeddedVideo | None:
    """The MotionPhoto item: its distance from the end is its length plus all after it."""
    index = next(
        (i for i, item in enumerate(packet.items) if item.fields.get("Semantic") == "MotionPhoto"),
        None,
    )
    if index is None or index == 0:  # the first item is the primary image, by the spec
        return None
    video = packet.items[index]
    length = _integer(video.fields.get("Length"))
    if length is None or length <= 0:
        return None
    offset = length
    for before, after in zip(packet.items[index:], packet.items[index + 1 :], strict=False):
        # An item's padding lies after it, before the next item.
        offset += (_integer(before.fields.get("Padding")) or 0) + (
            _integer(after.fields.get("Length")) or 0
        )
    return EmbeddedVideo(
        form="motion_photo",
        offset_from_end=offset,
        length=length,
        mime=video.fields.get("Mime"),
        presentation_timestamp_us=_integer(packet.camera.get("MotionPhotoPresentationTimestampUs")),
    )


def _from_micro_video(packet: _Packet) -> EmbeddedVideo | None:
    camera = packet.camera
    if camera.get("MicroVideo") != "1":
        return None
    offset = _integer(camera.get("MicroVideoOffset"))
    if offset is None or offset <= 0:
        return None
    return EmbeddedVideo(
        form="micro_video",
        offset_from_end=offset,
        length=None,
        mime="video/mp4",  # the only kind MicroVideo files ever carried
        presentation_timestamp_us=_integer(camera.get("MicroVideoPresentationTimestampUs")),
    )


def _integer(text: str | None) -> int | None:
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def _walk(xmp: bytes) -> _Packet:
    """One expat pass: GCamera properties and the Container directory's items.

    RDF allows a property as an attribute or as an element holding text, and writers use both
    (``<Container:Item Item:Length="5"/>``, ``<Item:Length>5</Item:Length>``): both are read.
    An item is an ``rdf:li`` of the directory's sequence; its ``Item:`` fields are taken from
    anywhere inside it.
    """
    if len(xmp) > _MAX_PACKET:
        raise XmpRefused("the packet is too large")
    packet = _Packet()
    stack: list[str] = []
    text: list[str] = []
    item: _Item | None = None
    item_depth = 0

    def refuse(*_: Any) -> None:
        raise XmpRefused("the packet declares a DTD")

    def start(name: str, attributes: dict[str, str]) -> None:
        nonlocal item, item_depth
        stack.append(name)
        text.clear()
        if name == f"{RDF_NS}{_SEPARATOR}li" and stack[-3:-2] == [_directory()]:
            item, item_depth = _Item(), len(stack)
            packet.items.append(item)
        for key, value in attributes.items():
            namespace, _, local = key.partition(_SEPARATOR)
            if namespace == CAMERA_NS:
                packet.camera[local] = value
            elif namespace == ITEM_NS and item is not None:
                item.fields[local] = value

    def end(name: str) -> None:
        nonlocal item
        namespace, _, local = name.partition(_SEPARATOR)
        value = "".join(text).strip()
        if value and namespace == CAMERA_NS:
            packet.camera[local] = value
        elif value and namespace == ITEM_NS and item is not None:
            item.fields[local] = value
        if item is not None and len(stack) == item_depth:
            item = None
        stack.pop()
        text.clear()

    parser = expat.ParserCreate(namespace_separator=_SEPARATOR)
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text.append
    try:
        # XMP packets are UTF-8 (ISO 16684-1); the standalone packet wrapper is fine for expat.
        parser.Parse(xmp.rstrip(b"\0"), True)
    except expat.ExpatError as error:
        raise XmpRefused(f"not well-formed XML: {error}") from error
    return packet


def _directory() -> str:
    return f"{CONTAINER_NS}{_SEPARATOR}Directory"
