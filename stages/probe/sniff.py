"""Deciding what a file is from its first bytes, whatever its name or declared type says.

:func:`sniff` names a supported format or raises :class:`BadMediaError` with a short human
description of what the file is instead ("a PDF document", "an HTML page", ...).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

from mediamill_core.keys import RAW_TYPES
from stages.contract import BadMediaError, MediaKind

HEAD_BYTES = 4096  # enough for every signature below, an ftyp brand list and an SVG prologue


@dataclass(frozen=True, slots=True)
class Sniffed:
    """A supported format recognised from the file's bytes."""

    kind: MediaKind
    format: str  # jpeg png webp gif heif avif tiff, a camera RAW (dng ...), mp4 mov webm mkv avi
    mime_type: str
    label: str  # how a person names it in an error message


_IMAGE = MediaKind.IMAGE
_VIDEO = MediaKind.VIDEO
# Keyed by the label in lower case, which is what the signature checks below return;
# HEIC (HEVC-coded, the phones' kind) and generic HEIF share the "heif" format.
FORMATS: dict[str, Sniffed] = {
    sniffed.label.lower(): sniffed
    for sniffed in (
        Sniffed(_IMAGE, "jpeg", "image/jpeg", "JPEG"),
        Sniffed(_IMAGE, "png", "image/png", "PNG"),
        Sniffed(_IMAGE, "webp", "image/webp", "WebP"),
        Sniffed(_IMAGE, "gif", "image/gif", "GIF"),
        Sniffed(_IMAGE, "heif", "image/heic", "HEIC"),
        Sniffed(_IMAGE, "heif", "image/heif", "HEIF"),
        Sniffed(_IMAGE, "avif", "image/avif", "AVIF"),
        Sniffed(_IMAGE, "tiff", "image/tiff", "TIFF"),
        # Camera RAW, decoded by LibRaw (stages.probe.raw): "dng", "image/x-adobe-dng", "DNG" ...
        *(Sniffed(_IMAGE, raw, media_type, raw.upper()) for raw, media_type in RAW_TYPES.items()),
        Sniffed(_VIDEO, "mp4", "video/mp4", "MP4"),
        Sniffed(_VIDEO, "mov", "video/quicktime", "MOV"),
        Sniffed(_VIDEO, "webm", "video/webm", "WebM"),
        Sniffed(_VIDEO, "mkv", "video/x-matroska", "MKV"),
        Sniffed(_VIDEO, "avi", "video/x-msvideo", "AVI"),
    )
}

# ISO base media brands (ftyp major and compatible brands), by what they make the file.
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"}
_HEIF_GENERIC_BRANDS = {b"mif1", b"msf1", b"mif2"}
_AVIF_BRANDS = {b"avif", b"avis"}
_MOV_BRANDS = {b"qt  "}
_MP4_BRANDS = {
    *(b"iso" + bytes([digit]) for digit in b"m23456789"),
    *{b"mp41", b"mp42", b"mp71", b"avc1", b"hvc1", b"av01", b"dash", b"mmp4", b"MSNV"},
    *{b"M4V ", b"M4VH", b"M4VP", b"f4v ", b"XAVC", b"cmfc", b"cmf2", b"NDAS", b"ROSS"},
    *(b"3gp" + bytes([digit]) for digit in b"456789"),
    *{b"3g2a", b"3g2b", b"3g2c", b"3ge6", b"3ge7", b"3gg6", b"kddi"},
}
_ISO_DECISIONS: tuple[tuple[set[bytes], str], ...] = (
    ({b"crx "}, "cr3"),  # Canon's CR3 is ISO media too; only the major brand says so
    (_AVIF_BRANDS, "avif"),
    (_HEIF_BRANDS, "heic"),
    (_HEIF_GENERIC_BRANDS, "heif"),
    (_MOV_BRANDS, "mov"),
    (_MP4_BRANDS, "mp4"),
)
# Brands that name something we do not take, even when an MP4 brand is also listed.
_REFUSED_BRANDS = {
    b"M4A ": "an M4A audio file",
    b"M4B ": "an M4B audio book",
    b"M4P ": "a protected M4A audio file",
    b"F4A ": "an F4A audio file",
    b"jxl ": "a JPEG XL image",
    b"jp2 ": "a JPEG 2000 image",
    b"mjp2": "a Motion JPEG 2000 video",
}
# Camera RAW formats with a signature of their own (ORF and RW2 are TIFF with another magic).
_RAW_SIGNATURES: tuple[tuple[tuple[bytes, ...], str], ...] = (
    ((b"IIRO", b"IIRS", b"MMOR"), "orf"),
    ((b"IIU\x00",), "rw2"),
    ((b"FUJIFILMCCD-RAW",), "raf"),
)
# TIFF-based RAW files whose first IFD names the camera's maker: a NEF or ARW keeps its raw
# data in a sub-IFD (tag 330), which a TIFF the same camera or its software saves has not.
_RAW_MAKERS = (("NIKON", "nef"), ("SONY", "arw"))
_SUB_IFDS, _MAKE, _DNG_VERSION = 0x014A, 0x010F, 0xC612
# QuickTime files older than ftyp start directly with one of these boxes.
_QUICKTIME_FIRST_BOXES = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}

# Recognisable but unsupported content, checked after the supported signatures.
_OTHER_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"PK\x05\x06", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"ID3", "an MP3 audio file"),
    (b"fLaC", "a FLAC audio file"),
    (b"OggS", "an Ogg media file"),
    (b"8BPS", "a Photoshop document"),
    (b"\xff\x0a", "a JPEG XL image"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "a JPEG XL image"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "a JPEG 2000 image"),
    (b"\x00\x00\x01\x00", "an icon file"),
    (b"\x7fELF", "a program (ELF executable)"),
    (b"MZ", "a Windows program"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Microsoft Office document"),
    (b"{\\rtf", "an RTF document"),
    (b"\x00\x00\x01\xba", "an MPEG program stream video"),
    (b"0&\xb2u\x8ef\xcf\x11", "a Windows Media file (ASF/WMV)"),
    (b"FLV\x01", "a Flash video"),
)
_RIFF_TYPES = {b"WAVE": "a WAV audio file", b"AVI ": "", b"WEBP": "", b"RMID": "a MIDI file"}


def sniff(path: Path) -> Sniffed:
    """Recognise a supported format from the file's first bytes, or refuse it."""
    with path.open("rb") as file:
        head = file.read(HEAD_BYTES)
    if not head:
        raise _unsupported("the file is empty")
    found = _supported(head)
    if found is not None:
        return FORMATS[found]
    raise _unsupported(describe(head))


def _unsupported(description: str) -> BadMediaError:
    return BadMediaError(f"unsupported media type: {description}")


def _supported(head: bytes) -> str | None:
    """The supported format ``head`` starts like, None if none (refusals raise directly)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return _tiff(head)
    for signatures, raw_format in _RAW_SIGNATURES:
        if head.startswith(signatures):
            return raw_format
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return _matroska(head)
    if head[4:8] == b"ftyp":
        return _iso_media(head)
    if len(head) >= 8 and head[4:8] in _QUICKTIME_FIRST_BOXES:
        size = struct.unpack(">I", head[:4])[0]
        if size in (0, 1) or size >= 8:  # 0: to the end of the file, 1: a 64-bit size follows
            return "mov"
    return None


def _iso_media(head: bytes) -> str:
    size = struct.unpack(">I", head[:4])[0]
    if size < 16 or size > len(head) or size % 4:
        raise _unsupported("an ISO media file with a damaged header")
    major = head[8:12]
    compatible = set(head[offset : offset + 4] for offset in range(16, size, 4))
    # Only the major brand refuses: an iTunes M4V video lists "M4A " among its compatibles.
    if major in _REFUSED_BRANDS:
        raise _unsupported(_REFUSED_BRANDS[major])
    # The major brand says what the file is; compatible brands decide when it is generic,
    # image brands first, since HEIF image sequences also list ISO video brands.
    for brands, found in _ISO_DECISIONS:
        if major in brands and brands is not _HEIF_GENERIC_BRANDS:
            return found
    for brands, found in _ISO_DECISIONS:
        if brands & compatible or major in brands:
            return found
    name = major.decode("latin-1").strip() or "?"
    raise _unsupported(f"an ISO media file of an unknown kind (brand {name!r})")


def _tiff(head: bytes) -> str:
    if head[8:10] == b"CR":  # Canon writes "CR" and a version after the TIFF header
        return "cr2"
    entries = _tiff_ifd0(head)
    if _DNG_VERSION in entries:
        return "dng"
    make = entries[_MAKE].ascii(head).upper() if _MAKE in entries else ""
    for maker, raw_format in _RAW_MAKERS:
        if make.startswith(maker) and _SUB_IFDS in entries:
            return raw_format
    return "tiff"


def _tiff_ifd0(head: bytes) -> dict[int, _Entry]:
    """The first IFD's entries that lie within ``head`` (classic TIFF only), by tag."""
    order = "<" if head[:2] == b"II" else ">"
    if head[2:4] not in (b"*\x00", b"\x00*"):
        return {}
    offset = struct.unpack(order + "I", head[4:8])[0]
    if offset + 2 > len(head):
        return {}
    count = struct.unpack(order + "H", head[offset : offset + 2])[0]
    entries = {}
    for index in range(count):
        entry = offset + 2 + index * 12
        if entry + 12 > len(head):
            break
        tag, kind, values = struct.unpack(order + "HHI", head[entry : entry + 8])
        entries[tag] = _Entry(order, kind, values, entry + 8)
    return entries


@dataclass(frozen=True, slots=True)
class _Entry:
    order: str
    kind: int
    count: int
    field: int  # where the value is, or (for values over four bytes) its offset

    def ascii(self, head: bytes) -> str:
        """The entry's text, "" when it is no ASCII entry or lies outside ``head``."""
        if self.kind != 2:
            return ""
        start = self.field
        if self.count > 4:
            start = struct.unpack(self.order + "I", head[self.field : self.field + 4])[0]
        return head[start : start + self.count].split(b"\x00")[0].decode("latin-1")


def _matroska(head: bytes) -> str:
    doctype = _ebml_doctype(head)
    if doctype == b"webm":
        return "webm"
    if doctype == b"matroska":
        return "mkv"
    name = doctype.decode("latin-1") if doctype else "none"
    raise _unsupported(f"an EBML file of an unknown kind (DocType {name!r})")


def _ebml_doctype(head: bytes) -> bytes | None:
    """The DocType of the EBML header at the start of ``head``."""
    offset = 4
    header_size, offset = _ebml_vint(head, offset)
    end = min(len(head), offset + header_size)
    while offset < end:
        element, offset = _ebml_id(head, offset)
        size, offset = _ebml_vint(head, offset)
        if element == 0x4282:
            return head[offset : offset + size].rstrip(b"\x00")
        offset += size
    return None


def _ebml_id(data: bytes, offset: int) -> tuple[int, int]:
    length = _vint_length(data, offset)
    return int.from_bytes(data[offset : offset + length], "big"), offset + length


def _ebml_vint(data: bytes, offset: int) -> tuple[int, int]:
    length = _vint_length(data, offset)
    value = int.from_bytes(data[offset : offset + length], "big")
    return value & ((1 << (7 * length)) - 1), offset + length


def _vint_length(data: bytes, offset: int) -> int:
    if offset >= len(data) or data[offset] == 0:
        return len(data)  # ends the caller's loop: nothing sensible follows
    return 9 - data[offset].bit_length()


_MARKUP = re.compile(rb"<(!doctype\s+html|html|head|body|svg|\?xml)[\s>/]", re.IGNORECASE)
_TEXT_BYTES = set(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D}


def describe(head: bytes) -> str:
    """A short human description of content that is not a supported format."""
    if head.startswith(b"RIFF") and head[8:12] in _RIFF_TYPES:
        return _RIFF_TYPES[head[8:12]] or "a damaged RIFF file"
    if head.startswith(b"RIFF"):
        return "a RIFF file of an unknown kind"
    if head.startswith(b"BM") and head[6:10] == b"\x00\x00\x00\x00":
        return "a BMP image"
    for signature, description in _OTHER_SIGNATURES:
        if head.startswith(signature):
            return description
    # Text before MPEG audio: a UTF-16 byte-order mark (FF FE) also passes for a frame sync.
    text = _as_text(head)
    if text is not None:
        return _describe_text(text)
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "an MPEG audio file (MP3 or AAC)"
    return "unrecognised content"


def _as_text(head: bytes) -> bytes | None:
    """``head`` without a byte-order mark when it reads as text, else None."""
    for bom, encoding in (
        (b"\xef\xbb\xbf", "utf-8"),
        (b"\xff\xfe", "utf-16-le"),
        (b"\xfe\xff", "utf-16-be"),
    ):
        if head.startswith(bom):
            try:
                return head[len(bom) :].decode(encoding, errors="strict").encode("utf-8")
            except UnicodeDecodeError:
                # A UTF-16 head may be cut inside a character; text anyway.
                return head[len(bom) :].decode(encoding, errors="ignore").encode("utf-8")
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 4:  # not just a character cut at the end of the head
            return None
        decoded = head[: error.start].decode("utf-8")
    ascii_part = decoded.encode("ascii", errors="ignore")
    if ascii_part and sum(byte in _TEXT_BYTES for byte in ascii_part) >= 0.95 * len(ascii_part):
        return decoded.encode("utf-8")
    return None


def _describe_text(text: bytes) -> str:
    stripped = text.lstrip()
    markup = _MARKUP.search(stripped[:2048])
    lowered = stripped[:2048].lower()
    if markup is not None:
        tag = markup.group(1).lower()
        if tag == b"svg" or (tag == b"?xml" and b"<svg" in lowered):
            return "an SVG document"
        if tag == b"?xml":
            return "an XML document"
        return "an HTML page"
    if stripped.startswith((b"{", b"[")):
        return "a JSON or text file"
    if stripped.startswith(b"#EXTM3U"):
        return "a playlist (M3U)"
    return "a plain text file"
