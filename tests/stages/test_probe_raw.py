"""Camera RAW in the probe: recognised from the bytes, opened by LibRaw, refused with a reason.

The signature tests use synthetic headers (they prove the sniffer only); the DNG tests use files
written by worker.dev.raw_samples, which LibRaw decodes for real.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
import rawpy

from stages import BadMediaError, Job, StageOptions, TransientError
from stages.probe.raw import FLIP_TO_ORIENTATION, raw_failure
from stages.probe.sniff import sniff
from stages.probe.stage import ProbeStage
from worker.dev.raw_samples import write_dng


def probe(path: Path) -> dict[str, Any]:
    return ProbeStage(StageOptions()).run_sync(Job.standalone(path, path.parent)).metadata


def refused(path: Path) -> str:
    with pytest.raises(BadMediaError) as caught:
        probe(path)
    return str(caught.value)


def tiff_head(entries: list[tuple[int, int, bytes]], *, after_header: bytes = b"") -> bytes:
    """A little-endian TIFF start with one IFD of (tag, type, value) entries; values longer than
    four bytes go after the IFD."""
    ifd_offset = 8 + len(after_header)
    data_offset = ifd_offset + 2 + 12 * len(entries) + 4
    table, data = b"", b""
    for tag, kind, value in sorted(entries):
        count = len(value) if kind in (1, 2, 7) else len(value) // {3: 2, 4: 4}[kind]
        if len(value) <= 4:
            field = value.ljust(4, b"\x00")
        else:
            field = struct.pack("<I", data_offset + len(data))
            data += value + b"\x00" * (len(value) % 2)
        table += struct.pack("<HHI", tag, kind, count) + field
    header = b"II*\x00" + struct.pack("<I", ifd_offset) + after_header
    return header + struct.pack("<H", len(entries)) + table + b"\x00" * 4 + data


MAKE, SUB_IFDS = 0x010F, 0x014A
SIGNATURES: list[tuple[str, bytes, str, str]] = [
    (
        "cr2",
        tiff_head([(0x0100, 3, b"\x10\x00")], after_header=b"CR\x02\x00\x00\x00\x00\x00"),
        "image/x-canon-cr2",
        "CR2",
    ),
    (
        "nef",
        tiff_head([(MAKE, 2, b"NIKON CORPORATION\x00"), (SUB_IFDS, 4, b"\x00\x01\x00\x00")]),
        "image/x-nikon-nef",
        "NEF",
    ),
    (
        "arw",
        tiff_head([(MAKE, 2, b"SONY\x00"), (SUB_IFDS, 4, b"\x00\x01\x00\x00")]),
        "image/x-sony-arw",
        "ARW",
    ),
    ("dng", tiff_head([(0xC612, 1, b"\x01\x04\x00\x00")]), "image/x-adobe-dng", "DNG"),
    ("orf", b"IIRO\x08\x00\x00\x00" + bytes(64), "image/x-olympus-orf", "ORF"),
    ("orf-s", b"IIRS\x08\x00\x00\x00" + bytes(64), "image/x-olympus-orf", "ORF"),
    ("orf-be", b"MMOR\x00\x00\x00\x08" + bytes(64), "image/x-olympus-orf", "ORF"),
    ("rw2", b"IIU\x00\x18\x00\x00\x00" + bytes(64), "image/x-panasonic-rw2", "RW2"),
    ("raf", b"FUJIFILMCCD-RAW 0201FF383501" + bytes(64), "image/x-fuji-raf", "RAF"),
    (
        "cr3",
        b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01crx isom" + bytes(64),
        "image/x-canon-cr3",
        "CR3",
    ),
]


@pytest.mark.parametrize(
    ("name", "head", "mime_type", "label"), SIGNATURES, ids=[row[0] for row in SIGNATURES]
)
def test_raw_formats_are_recognised_from_their_bytes(
    tmp_path: Path, name: str, head: bytes, mime_type: str, label: str
) -> None:
    path = tmp_path / "upload.jpg"  # the name says nothing
    path.write_bytes(head)
    found = sniff(path)
    assert (found.format, found.mime_type, found.label) == (name.split("-")[0], mime_type, label)


@pytest.mark.parametrize(
    ("name", "head", "mime_type", "label"), SIGNATURES, ids=[row[0] for row in SIGNATURES]
)
def test_a_raw_signature_alone_is_refused_by_libraw_with_the_format_named(
    tmp_path: Path, name: str, head: bytes, mime_type: str, label: str
) -> None:
    path = tmp_path / "stub.bin"
    path.write_bytes(head)
    message = refused(path)
    assert f" {label}: " in message
    assert "unsupported media type" not in message


@pytest.mark.parametrize(
    "entries",
    [
        [(MAKE, 2, b"NIKON CORPORATION\x00")],  # a TIFF a Nikon camera or scanner saved
        [(MAKE, 2, b"Canon\x00"), (SUB_IFDS, 4, b"\x00\x01\x00\x00")],  # not a maker we map
    ],
    ids=["nikon-tiff", "other-maker"],
)
def test_tiffs_from_camera_makers_without_raw_data_stay_tiff(
    tmp_path: Path, entries: list[tuple[int, int, bytes]]
) -> None:
    path = tmp_path / "scan.tif"
    path.write_bytes(tiff_head(entries))
    assert sniff(path).format == "tiff"


def test_a_dng_is_probed_through_libraw(tmp_path: Path) -> None:
    facts = probe(write_dng(tmp_path / "photo.dng", 600, 400, preview=600))
    assert facts == {
        "kind": "image",
        "format": "dng",
        "mime_type": "image/x-adobe-dng",
        "width": 600,
        "height": 400,
        "pages": 1,
        "animated": False,
        "orientation": 1,
    }


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_the_raw_orientation_flag_is_reported_as_exif_orientation(
    tmp_path: Path, orientation: int
) -> None:
    facts = probe(write_dng(tmp_path / "turned.dng", 600, 400, orientation=orientation))
    assert (facts["width"], facts["height"], facts["orientation"]) == (600, 400, orientation)


def test_flip_mapping_inverts_dcraws_exif_table() -> None:
    # dcraw: flip = "50132467"[exif_orientation & 7]
    assert {int("50132467"[o & 7]): o for o in range(1, 9)} == FLIP_TO_ORIENTATION


def test_a_truncated_dng_is_refused_with_a_reason(tmp_path: Path) -> None:
    whole = write_dng(tmp_path / "whole.dng", 600, 400).read_bytes()
    cut = tmp_path / "cut.dng"
    cut.write_bytes(whole[: len(whole) // 3])
    assert refused(cut) == "truncated DNG: the file ends before its data does"


def test_a_failure_to_read_our_own_copy_is_ours_not_the_files(tmp_path: Path) -> None:
    unreadable = tmp_path / "spooled.dng"
    unreadable.mkdir()  # reading it fails with an OSError, as a failed disk would
    verdict = raw_failure(rawpy.LibRawIOError(), unreadable, "DNG", doing="reading the DNG")
    assert isinstance(verdict, TransientError)
    assert str(verdict).startswith("reading the DNG failed: ")
    whole = write_dng(tmp_path / "whole.dng", 60, 40)
    verdict = raw_failure(rawpy.LibRawIOError(), whole, "DNG", doing="reading the DNG")
    assert isinstance(verdict, BadMediaError)


def test_memory_libraw_cannot_get_is_retried() -> None:
    error = rawpy.LibRawUnsufficientMemoryError()
    verdict = raw_failure(error, Path("/nonexistent"), "NEF", doing="decoding the NEF")
    assert isinstance(verdict, TransientError)
    assert "out of memory" in str(verdict)
