"""The probe reads a Live Photo's content identifier from both halves, as iPhones write them."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from stages.probe.live import MOV_KEY, canonical, photo_identifier
from stages.probe.sniff import sniff
from stages.probe.stage import probe_image, probe_video
from worker.dev.live_samples import (
    apple_maker_note,
    live_photo_exif,
    write_live_photo,
    write_live_still,
)
from worker.dev.samples import write_heic, write_video

IDENTIFIER = "6F1C2B0E-8D4A-4F3B-9E21-5A7C0D9B1E42"


def _mdta_keys(data: bytes) -> list[str]:
    """The key names of ``moov/meta/keys``, read box by box (not a search for the text)."""

    def boxes(start: int, end: int) -> dict[bytes, tuple[int, int]]:
        found: dict[bytes, tuple[int, int]] = {}
        while start + 8 <= end:
            size, kind = struct.unpack(">I4s", data[start : start + 8])
            assert size >= 8, (kind, size)
            found[kind] = (start + 8, start + size)
            start += size
        return found

    moov = boxes(0, len(data))[b"moov"]
    meta = boxes(*moov)[b"meta"]
    # A QuickTime meta box has no version/flags: its children start right away.
    keys_start, keys_end = boxes(*meta)[b"keys"]
    (count,) = struct.unpack(">I", data[keys_start + 4 : keys_start + 8])
    names, at = [], keys_start + 8
    for _ in range(count):
        size, namespace = struct.unpack(">I4s", data[at : at + 8])
        assert namespace == b"mdta"
        names.append(data[at + 8 : at + size].decode())
        at += size
    assert at == keys_end
    return names


@pytest.mark.parametrize("heic", [True, False], ids=["heic", "jpeg"])
def test_both_halves_of_a_live_photo_carry_the_same_identifier(tmp_path: Path, heic: bool) -> None:
    still, clip = write_live_photo(tmp_path, IDENTIFIER, heic=heic)

    assert sniff(still).format == ("heif" if heic else "jpeg")
    assert probe_image(still, sniff(still))["content_identifier"] == IDENTIFIER
    assert sniff(clip).format == "mov"
    assert probe_video(clip, sniff(clip))["content_identifier"] == IDENTIFIER
    # The MOV holds it as iPhones do: a QuickTime mdta key, not a udta atom.
    assert MOV_KEY in _mdta_keys(clip.read_bytes())


def test_the_identifier_is_read_in_either_byte_order() -> None:
    note = apple_maker_note(IDENTIFIER, byte_order=b"II")
    assert photo_identifier(live_photo_exif(None, maker_note=note)) == IDENTIFIER


@pytest.mark.parametrize(
    "note",
    [
        pytest.param(b"Apple iOS\0\0\x01MM\xff\xff\0", id="entry-count-past-the-end"),
        pytest.param(apple_maker_note(IDENTIFIER)[:30], id="cut-inside-the-ifd"),
        pytest.param(b"Apple iOS\0\0\x01XX\0\0", id="unknown-byte-order"),
        pytest.param(b"Nikon\0\x02\x10\0\0MM\0*\0\0\0\x08\0\0", id="another-makers-note"),
        pytest.param(apple_maker_note("not-a-uuid-at-all-not-a-uuid-at-all!"), id="not-a-uuid"),
    ],
)
def test_a_malformed_maker_note_is_no_identifier_and_no_failure(
    tmp_path: Path, note: bytes
) -> None:
    still = write_live_still(tmp_path / "broken.heic", None, maker_note=note)

    facts = probe_image(still, sniff(still))

    assert facts["content_identifier"] is None
    assert facts["width"] == 320


def test_an_offset_past_the_note_is_refused_without_reading_beyond_it() -> None:
    note = bytearray(apple_maker_note(IDENTIFIER))
    # The second entry (0x0011) is at 14 + 2 + 12; its value offset is its last 4 bytes.
    entry = 14 + 2 + 12
    assert struct.unpack(">H", note[entry : entry + 2]) == (0x0011,)
    note[entry + 8 : entry + 12] = struct.pack(">I", 0x7FFF_FFF0)
    assert photo_identifier(live_photo_exif(None, maker_note=bytes(note))) is None


def test_photos_and_videos_without_one_say_so(tmp_path: Path) -> None:
    photo = write_heic(tmp_path / "plain.heic")
    video = write_video(tmp_path / "plain.mov", container="mov")

    assert probe_image(photo, sniff(photo))["content_identifier"] is None
    assert probe_video(video, sniff(video))["content_identifier"] is None
    assert photo_identifier(b"Exif\0\0garbage") is None


def test_only_a_hyphenated_uuid_is_an_identifier() -> None:
    assert canonical(IDENTIFIER.lower() + "\0") == IDENTIFIER
    assert canonical("{" + IDENTIFIER + "}") is None
    assert canonical(IDENTIFIER.replace("-", "")) is None
    assert canonical("#live:x") is None
    assert canonical(None) is None
