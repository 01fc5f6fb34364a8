"""Motion photos as the probe sees them: the XMP's claim read safely, from real JPEGs and HEICs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pyvips

from stages import Job, StageOptions
from stages.probe.motion import EmbeddedVideo, embedded_video
from stages.probe.stage import ProbeStage
from worker.dev import samples
from worker.dev.motion_samples import motion_photo_xmp, write_motion_photo

HEAD = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description xmlns:GCamera="http://ns.google.com/photos/1.0/camera/" '
    'xmlns:Container="http://ns.google.com/photos/1.0/container/" '
    'xmlns:Item="http://ns.google.com/photos/1.0/container/item/"'
)
TAIL = "</rdf:Description></rdf:RDF></x:xmpmeta>"


def packet(attributes: str, body: str = "") -> bytes:
    return f"{HEAD} {attributes}>{body}{TAIL}".encode()


def item(**fields: str) -> str:
    pairs = " ".join(f'Item:{key}="{value}"' for key, value in fields.items())
    return f'<rdf:li rdf:parseType="Resource"><Container:Item {pairs}/></rdf:li>'


def directory(*items: str) -> str:
    return f"<Container:Directory><rdf:Seq>{''.join(items)}</rdf:Seq></Container:Directory>"


PRIMARY = item(Mime="image/jpeg", Semantic="Primary", Length="0", Padding="0")


def probed(path: Path) -> dict[str, object]:
    return ProbeStage(StageOptions()).run_sync(Job.standalone(path, path.parent)).metadata


def test_a_pixel_packet_names_the_video_by_its_length_from_the_end() -> None:
    xmp = motion_photo_xmp(12345, timestamp_us=733_000)
    assert embedded_video(xmp) == EmbeddedVideo("motion_photo", 12345, 12345, "video/mp4", 733_000)


def test_items_after_the_video_and_their_padding_place_it_further_back() -> None:
    # Ultra HDR motion photos: the gain map may follow the video.
    body = directory(
        PRIMARY,
        item(Mime="video/mp4", Semantic="MotionPhoto", Length="5000", Padding="16"),
        item(Mime="image/jpeg", Semantic="GainMap", Length="700"),
    )
    video = embedded_video(packet('GCamera:MotionPhoto="1"', body))
    assert video is not None
    assert (video.offset_from_end, video.length) == (5000 + 16 + 700, 5000)


def test_item_fields_written_as_elements_are_read_too() -> None:
    body = (
        "<Container:Directory><rdf:Seq>"
        '<rdf:li rdf:parseType="Resource"><Container:Item rdf:parseType="Resource">'
        "<Item:Mime>image/jpeg</Item:Mime><Item:Semantic>Primary</Item:Semantic>"
        "</Container:Item></rdf:li>"
        '<rdf:li rdf:parseType="Resource"><Container:Item rdf:parseType="Resource">'
        "<Item:Mime>video/mp4</Item:Mime><Item:Semantic>MotionPhoto</Item:Semantic>"
        "<Item:Length> 4096 </Item:Length></Container:Item></rdf:li>"
        "</rdf:Seq></Container:Directory>"
        "<GCamera:MotionPhotoPresentationTimestampUs>40</GCamera:MotionPhotoPresentationTimestampUs>"
    )
    assert embedded_video(packet("", body)) == EmbeddedVideo(
        "motion_photo", 4096, 4096, "video/mp4", 40
    )


def test_the_older_micro_video_offset_counts_from_the_end() -> None:
    xmp = motion_photo_xmp(999, form="micro_video", timestamp_us=0)
    assert embedded_video(xmp) == EmbeddedVideo("micro_video", 999, None, "video/mp4", 0)


@pytest.mark.parametrize(
    "xmp",
    [
        packet('GCamera:MicroVideo="0" GCamera:MicroVideoOffset="100"'),
        packet('GCamera:MicroVideo="1" GCamera:MicroVideoOffset="many"'),
        packet('GCamera:MicroVideo="1" GCamera:MicroVideoOffset="-5"'),
        packet("", directory(PRIMARY, item(Semantic="GainMap", Length="700"))),
        packet("", directory(PRIMARY, item(Semantic="MotionPhoto"))),
        packet("", directory(PRIMARY, item(Semantic="MotionPhoto", Length="0"))),
        packet("", directory(item(Semantic="MotionPhoto", Length="80"))),  # it is the primary
        b"<x:xmpmeta><unclosed>",
        b"",
        None,
    ],
    ids=[
        "micro-video-off",
        "offset-not-a-number",
        "offset-negative",
        "no-video-item",
        "no-length",
        "zero-length",
        "video-as-primary",
        "not-xml",
        "empty",
        "no-xmp",
    ],
)
def test_no_usable_claim_is_no_motion_photo(xmp: bytes | None) -> None:
    assert embedded_video(xmp) is None


def test_a_packet_with_a_dtd_is_refused_before_any_entity_expands() -> None:
    # Harmless on its face, and a claim once expanded: refused for its DTD alone.
    declared = b'<!DOCTYPE x [<!ENTITY off "100">]>' + packet(
        'GCamera:MicroVideo="1" GCamera:MicroVideoOffset="&off;"'
    )
    assert embedded_video(declared) is None
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE x:xmpmeta [<!ENTITY a "aaaaaaaaaa">'
        + "".join(
            f'<!ENTITY {b} "&{a};&{a};&{a};&{a};&{a};&{a};&{a};&{a};&{a};&{a};">'
            for a, b in zip("abcdefgh", "bcdefghi", strict=True)
        )
        + "]>"
    ).encode()
    claim = packet('GCamera:MicroVideo="1" GCamera:MicroVideoOffset="100" GCamera:Note="&i;"')
    assert embedded_video(laughs + claim) is None
    external = b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + packet(
        'GCamera:MicroVideo="1" GCamera:MicroVideoOffset="100" GCamera:Note="&e;"'
    )
    assert embedded_video(external) is None


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("pixel.jpg", {}),
        ("mvimg.jpg", {"form": "micro_video"}),
        ("pixel.heic", {"heic": True}),
    ],
)
def test_the_probe_states_the_video_a_real_motion_photo_declares(
    tmp_path: Path, name: str, options: dict[str, object]
) -> None:
    path = write_motion_photo(tmp_path / name, 160, 120, **options)  # type: ignore[arg-type]
    metadata = probed(path)
    assert metadata["kind"] == "image"
    assert (metadata["width"], metadata["height"]) == (160, 120)
    stated = metadata["motion_photo"]
    assert isinstance(stated, dict)
    video = EmbeddedVideo.from_metadata(stated)
    assert video.form == options.get("form", "motion_photo")
    # The offset lands on the MP4's ftyp box, whatever wraps it (a HEIC's mpvd box).
    with path.open("rb") as file:
        file.seek(path.stat().st_size - video.offset_from_end)
        assert file.read(8)[4:] == b"ftyp"


def test_a_plain_photo_is_stated_to_be_no_motion_photo(tmp_path: Path) -> None:
    assert probed(samples.write_jpeg(tmp_path / "plain.jpg", 80, 60))["motion_photo"] is None
    assert probed(samples.write_heic(tmp_path / "plain.heic", 80, 60))["motion_photo"] is None
    assert "motion_photo" not in probed(samples.write_video(tmp_path / "clip.mp4", seconds=0.5))


def test_a_heic_libvips_refuses_still_states_its_video_through_libheif(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_motion_photo(tmp_path / "PXL_MP.heic", 80, 60, heic=True)
    real_call = pyvips.Operation.call

    def refuse_heif(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "heifload":
            raise pyvips.Error("unable to call heifload", "heif: unsupported variant")
        return real_call(name, *args, **kwargs)

    monkeypatch.setattr(pyvips.Operation, "call", staticmethod(refuse_heif))
    stated = probed(path)["motion_photo"]
    assert isinstance(stated, dict)
    assert stated["form"] == "motion_photo"
