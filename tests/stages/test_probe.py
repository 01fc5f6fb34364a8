"""The probe stage on real encoded media, on files that lie about their type, and on junk."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import pyvips
from PIL import TiffImagePlugin

from stages import BadMediaError, Job, JobCancelled, MediaKind, StageOptions
from stages.probe.stage import ProbeStage, vips_reason
from worker.dev import broken_samples, samples


def make_job(path: Path) -> Job:
    return Job.standalone(path, path.parent)


def probe(path: Path) -> dict[str, Any]:
    result = ProbeStage(StageOptions()).run_sync(make_job(path))
    assert result.kind is not None
    assert result.kind.value == result.metadata["kind"]
    json.dumps(result.metadata)  # flat and JSON-serialisable, stored with the item
    return result.metadata


def refused(path: Path) -> str:
    with pytest.raises(BadMediaError) as caught:
        probe(path)
    return str(caught.value)


def test_declares_the_contract() -> None:
    assert ProbeStage.name == "probe"
    assert ProbeStage.cpu_bound
    assert not ProbeStage.optional
    assert ProbeStage.requires == ()
    assert set(ProbeStage.kinds) == set(MediaKind)
    found = {ep.name: ep for ep in entry_points(group="mediamill.stages")}
    assert found["probe"].load() is ProbeStage


# --- images -----------------------------------------------------------------------------------

Writer = Callable[[Path], Path]
IMAGES: list[tuple[str, Writer, str, str, tuple[int, int], int]] = [
    ("photo.jpg", lambda p: samples.write_jpeg(p, 240, 160), "jpeg", "image/jpeg", (240, 160), 1),
    (
        "progressive.jpg",
        lambda p: samples.write_jpeg(p, 200, 100, progressive=True),
        "jpeg",
        "image/jpeg",
        (200, 100),
        1,
    ),
    (
        "cmyk.jpg",
        lambda p: samples.write_jpeg(p, 90, 60, cmyk=True),
        "jpeg",
        "image/jpeg",
        (90, 60),
        1,
    ),
    ("alpha.png", lambda p: samples.write_png(p, 64, 48), "png", "image/png", (64, 48), 1),
    (
        "deep.png",
        lambda p: samples.write_png(p, 64, 48, bits16=True),
        "png",
        "image/png",
        (64, 48),
        1,
    ),
    (
        "indexed.png",
        lambda p: samples.write_png(p, 64, 48, palette=True),
        "png",
        "image/png",
        (64, 48),
        1,
    ),
    ("still.webp", lambda p: samples.write_webp(p, 64, 48), "webp", "image/webp", (64, 48), 1),
    (
        "moving.webp",
        lambda p: samples.write_webp(p, 64, 48, frames=3),
        "webp",
        "image/webp",
        (64, 48),
        3,
    ),
    (
        "still.gif",
        lambda p: samples.write_gif(p, 64, 48, frames=1),
        "gif",
        "image/gif",
        (64, 48),
        1,
    ),
    (
        "moving.gif",
        lambda p: samples.write_gif(p, 64, 48, frames=4),
        "gif",
        "image/gif",
        (64, 48),
        4,
    ),
    ("phone.heic", lambda p: samples.write_heic(p, 128, 96), "heif", "image/heic", (128, 96), 1),
    ("photo.avif", lambda p: samples.write_avif(p, 128, 96), "avif", "image/avif", (128, 96), 1),
    ("scan.tif", lambda p: samples.write_tiff(p, 64, 48), "tiff", "image/tiff", (64, 48), 1),
]


@pytest.mark.parametrize(
    ("name", "write", "fmt", "mime", "size", "pages"), IMAGES, ids=[row[0] for row in IMAGES]
)
def test_images_are_recognised_with_their_dimensions(
    tmp_path: Path,
    name: str,
    write: Writer,
    fmt: str,
    mime: str,
    size: tuple[int, int],
    pages: int,
) -> None:
    facts = probe(write(tmp_path / name))
    assert facts["kind"] == "image"
    assert (facts["format"], facts["mime_type"]) == (fmt, mime)
    assert (facts["width"], facts["height"]) == size
    assert facts["pages"] == pages
    assert facts["animated"] is (pages > 1)


def test_jpeg_orientation_is_reported_and_dimensions_are_as_stored(tmp_path: Path) -> None:
    path = samples.write_jpeg(tmp_path / "portrait.jpg", 300, 200, orientation=6, gps=(1.5, 2.5))
    facts = probe(path)
    assert (facts["width"], facts["height"], facts["orientation"]) == (300, 200, 6)


def test_kind_comes_from_the_bytes_not_the_name(tmp_path: Path) -> None:
    png_named_jpg = samples.write_png(tmp_path / "real.png", 40, 30).rename(tmp_path / "fake.jpg")
    jpeg_named_mp4 = samples.write_jpeg(tmp_path / "x.jpg", 40, 30).rename(tmp_path / "x.mp4")
    assert probe(png_named_jpg)["format"] == "png"
    assert probe(jpeg_named_mp4)["kind"] == "image"


def test_heif_with_a_generic_major_brand_is_recognised_by_its_compatible_brands(
    tmp_path: Path,
) -> None:
    data = bytearray(samples.write_heic(tmp_path / "a.heic", 64, 48).read_bytes())
    assert data[4:12] == b"ftypheic"
    data[8:12] = b"mif1"  # as some Android phones write it: heic only among the compatibles
    (tmp_path / "b.heic").write_bytes(data)
    facts = probe(tmp_path / "b.heic")
    assert (facts["format"], facts["mime_type"], facts["width"]) == ("heif", "image/heic", 64)


def test_heic_header_falls_back_to_libheif_when_libvips_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = samples.write_heic(tmp_path / "a.heic", 80, 60)
    real_call = pyvips.Operation.call

    def refuse_heif(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "heifload":
            raise pyvips.Error("unable to call heifload", "heif: unsupported variant")
        return real_call(name, *args, **kwargs)

    monkeypatch.setattr(pyvips.Operation, "call", staticmethod(refuse_heif))
    facts = probe(path)
    assert (facts["format"], facts["width"], facts["height"]) == ("heif", 80, 60)


def test_huge_dimensions_are_reported_from_the_header_without_decoding(tmp_path: Path) -> None:
    facts = probe(broken_samples.write_png_bomb(tmp_path / "bomb.png", 100_000, 100_000))
    assert (facts["width"], facts["height"]) == (100_000, 100_000)


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        ("VipsJpeg: premature end\nVipsJpeg: missing SOS marker\n", "missing SOS marker"),
        (
            "/spool/x.heic: bad seek\nheif: Invalid input: No 'ftyp' box",
            "Invalid input: No 'ftyp' box",
        ),
        # Another thread cleared libvips' shared buffer: only pyvips' own line is left.
        ("", "the decoder could not read it"),
    ],
)
def test_the_reason_is_the_decoders_last_word_without_the_path(
    detail: str, expected: str, tmp_path: Path
) -> None:
    path = tmp_path / "x.jpg"
    error = pyvips.Error("unable to call jpegload", "placeholder")
    error.detail = detail.replace("/spool/x.heic", str(path))
    assert vips_reason(error, path) == expected


def test_truncated_jpeg_is_refused_with_the_decoders_reason(tmp_path: Path) -> None:
    message = refused(broken_samples.write_broken_jpeg(tmp_path / "cut.jpg", keep_bytes=200))
    assert message.startswith("corrupt or truncated JPEG: ")
    assert len(message) > len("corrupt or truncated JPEG: ") + 5


def test_decoder_errors_do_not_carry_earlier_lines_or_paths(tmp_path: Path) -> None:
    # libvips keeps one error buffer per process, and a successful AVIF load leaves harmless
    # "<path>: bad seek" lines in it that pyvips would report with the next failure.
    other = tmp_path / "other-user"
    other.mkdir()
    probe(samples.write_avif(other / "x.avif", 64, 48))
    stale = pyvips.ffi.string(pyvips.vips_lib.vips_error_buffer())
    assert b"other-user" in stale  # the situation this test is about
    message = refused(broken_samples.write_broken_jpeg(tmp_path / "cut.jpg", keep_bytes=200))
    assert message.startswith("corrupt or truncated JPEG: ")
    assert "other-user" not in message
    assert "bad seek" not in message
    assert str(tmp_path) not in message


def test_a_tiff_claiming_to_be_a_dng_is_refused_by_libraw(tmp_path: Path) -> None:
    # The DNGVersion tag makes it a DNG to the sniffer; with no raw data LibRaw has the last word.
    dng_tags = TiffImagePlugin.ImageFileDirectory_v2()
    dng_tags[50706] = b"\x01\x04\x00\x00"  # DNGVersion
    dng_tags.tagtype[50706] = 1
    samples.picture(64, 48).save(tmp_path / "raw.dng", "TIFF", tiffinfo=dng_tags)
    assert refused(tmp_path / "raw.dng").startswith("unsupported or corrupt DNG: LibRaw ")


# --- videos -----------------------------------------------------------------------------------

VIDEOS: list[tuple[str, samples.Container, str, str, str, str]] = [
    ("clip.mp4", "mp4", "h264", "mp4", "video/mp4", "aac"),
    ("clip.mov", "mov", "h264", "mov", "video/quicktime", "aac"),
    ("clip.mkv", "mkv", "h264", "mkv", "video/x-matroska", "aac"),
    ("vp9.webm", "webm", "vp9", "webm", "video/webm", "opus"),
    ("vp8.webm", "webm", "vp8", "webm", "video/webm", "opus"),
    ("clip.avi", "avi", "mpeg4", "avi", "video/x-msvideo", "mp3"),
]


@pytest.mark.parametrize(
    ("name", "container", "codec", "fmt", "mime", "audio"), VIDEOS, ids=[row[0] for row in VIDEOS]
)
def test_videos_are_recognised_with_codec_size_and_duration(
    tmp_path: Path,
    name: str,
    container: samples.Container,
    codec: str,
    fmt: str,
    mime: str,
    audio: str,
) -> None:
    path = samples.write_video(
        tmp_path / name, container=container, codec=codec, width=160, height=96, seconds=1.0, fps=24
    )
    facts = probe(path)
    assert facts["kind"] == "video"
    assert (facts["format"], facts["mime_type"]) == (fmt, mime)
    assert (facts["width"], facts["height"]) == (160, 96)
    assert facts["video_codec"] == codec
    assert facts["audio_codec"] == audio
    assert facts["fps"] == pytest.approx(24.0)
    assert facts["duration"] == pytest.approx(1.0, abs=1.5 / 24)  # within a frame or so
    assert facts["rotation"] == 0


def test_silent_video_has_no_audio_codec(tmp_path: Path) -> None:
    facts = probe(samples.write_video(tmp_path / "silent.mp4", seconds=0.5, audio=False))
    assert facts["audio_codec"] is None
    assert facts["video_codec"] == "h264"


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_phone_video_rotation_is_read_from_the_track_matrix(tmp_path: Path, degrees: int) -> None:
    path = samples.write_video(
        tmp_path / "portrait.mov", container="mov", seconds=0.3, rotation=degrees
    )
    facts = probe(path)
    assert facts["rotation"] == degrees
    assert (facts["width"], facts["height"]) == (320, 240)  # as stored; display turns it


def test_old_quicktime_without_ftyp_is_a_mov(tmp_path: Path) -> None:
    data = bytearray(
        samples.write_video(tmp_path / "a.mov", container="mov", seconds=0.3).read_bytes()
    )
    assert data[4:8] == b"ftyp"
    data[4:8] = b"free"  # same layout, no ftyp: what QuickTime wrote before 2001
    (tmp_path / "old.mov").write_bytes(data)
    assert probe(tmp_path / "old.mov")["format"] == "mov"


def test_mp4_with_an_unknown_major_brand_is_recognised_by_its_compatible_brands(
    tmp_path: Path,
) -> None:
    data = bytearray(samples.write_video(tmp_path / "a.mp4", seconds=0.3).read_bytes())
    data[8:12] = b"zzzz"
    (tmp_path / "b.mp4").write_bytes(data)
    assert probe(tmp_path / "b.mp4")["format"] == "mp4"


def test_mp4_cut_before_its_moov_box_says_so(tmp_path: Path) -> None:
    whole = samples.write_video(tmp_path / "whole.mp4", seconds=1.0).read_bytes()
    mdat = whole.index(b"mdat")
    assert whole.index(b"moov") > mdat  # moov at the end, as a camera writes it
    for name, data in (("1k.mp4", whole[:1024]), ("in-mdat.mp4", whole[: mdat + 100])):
        (tmp_path / name).write_bytes(data)
        assert refused(tmp_path / name).startswith("truncated MP4 without a moov box")


def test_damaged_matroska_is_refused_with_a_reason(tmp_path: Path) -> None:
    whole = samples.write_video(tmp_path / "a.webm", container="webm", codec="vp9", seconds=0.3)
    (tmp_path / "cut.webm").write_bytes(whole.read_bytes()[:60])
    assert refused(tmp_path / "cut.webm").startswith(
        ("corrupt or truncated WebM: ", "no video stream in the WebM file")
    )


@pytest.mark.parametrize("container", ["mp4", "webm", "mkv"])
def test_audio_only_containers_have_no_video_stream(tmp_path: Path, container: str) -> None:
    path = samples.write_audio_only(tmp_path / f"song.{container}", container=container)
    assert refused(path).startswith("no video stream in the ")
    assert refused(path).endswith("the file holds only audio")


def test_album_art_is_not_a_video_stream(tmp_path: Path) -> None:
    path = samples.write_audio_only(tmp_path / "song.mp4", container="mp4", cover_art=True)
    assert refused(path).endswith("the file holds only audio")


@pytest.mark.parametrize(
    ("container", "description"),
    [("m4a", "an M4A audio file"), ("mp3", "an MP3 audio file"), ("wav", "a WAV audio file")],
)
def test_audio_files_are_named_as_such(tmp_path: Path, container: str, description: str) -> None:
    path = samples.write_audio_only(tmp_path / f"song.{container}", container=container)
    assert refused(path) == f"unsupported media type: {description}"


def test_cancelled_job_stops(tmp_path: Path) -> None:
    job = make_job(samples.write_png(tmp_path / "a.png", 16, 16))
    job.cancelled.set()
    with pytest.raises(JobCancelled):
        ProbeStage(StageOptions()).run_sync(job)


# --- not media at all -------------------------------------------------------------------------


def _zip_bytes(tmp_path: Path) -> bytes:
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as archive:
        archive.writestr("photo.jpg", b"not really")
    return (tmp_path / "a.zip").read_bytes()


SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><script>x()</script></svg>'
HOSTILE: list[tuple[str, Callable[[Path], bytes], str]] = [
    ("empty.jpg", lambda _: b"", "the file is empty"),
    ("random.jpg", lambda _: bytes(range(7, 256)) * 20, "unrecognised content"),
    ("page.jpg", lambda _: b"\n<!DOCTYPE html>\n<html><body>hi</body></html>", "an HTML page"),
    ("bare.html", lambda _: b"<html lang='en'><p>hi", "an HTML page"),
    (
        "utf16.jpg",
        lambda _: "\ufeff<html><body>x</body></html>".encode("utf-16-le"),
        "an HTML page",
    ),
    ("image.svg", lambda _: SVG, "an SVG document"),
    ("icon.png", lambda _: b'<svg width="1" height="1"/>', "an SVG document"),
    ("feed.jpg", lambda _: b'<?xml version="1.0"?><rss></rss>', "an XML document"),
    ("doc.jpg", lambda _: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "a PDF document"),
    ("archive.jpg", _zip_bytes, "a ZIP archive"),
    ("notes.jpg", lambda _: "Grüße, this is text\n".encode(), "a plain text file"),
    ("bitmap.jpg", lambda _: b"BM\x46\x00\x00\x00\x00\x00\x00\x00\x36" + bytes(60), "a BMP image"),
    ("layers.jpg", lambda _: b"8BPS\x00\x01" + bytes(30), "a Photoshop document"),
    ("next.jpg", lambda _: b"\xff\x0a\xfa\x7f" + bytes(30), "a JPEG XL image"),
    ("odd.mp4", lambda _: b"\x00\x00\x00\x14ftypabcd\x00\x00\x00\x00abcd", "brand 'abcd'"),
    ("odd.mkv", lambda _: b"\x1a\x45\xdf\xa3\x88\x42\x82\x85other", "DocType 'other'"),
]


@pytest.mark.parametrize(("name", "content", "reason"), HOSTILE, ids=[row[0] for row in HOSTILE])
def test_other_content_is_refused_with_what_it_is(
    tmp_path: Path, name: str, content: Callable[[Path], bytes], reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content(tmp_path))
    message = refused(path)
    assert message.startswith("unsupported media type: ")
    assert reason in message


def test_a_jpeg_signature_alone_is_refused_by_the_decoder(tmp_path: Path) -> None:
    path = tmp_path / "stub.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + bytes(16))
    assert refused(path).startswith("corrupt or truncated JPEG: ")


def _glib_log(level: int, message: bytes) -> None:
    """Log ``message`` in libvips' domain through GLib itself, as libvips' own code does."""
    import ctypes

    with open("/proc/self/maps") as maps:
        library = next(line.split()[-1] for line in maps if "libvips" in line.split()[-1])
    ctypes.CDLL(library).g_log(b"VIPS", level, b"%s", message)


def test_libvips_warnings_reach_python_logging_but_not_its_info_chatter(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Each INFO line would take the GIL from a libvips worker thread (stages/probe/stage.py).
    with caplog.at_level("DEBUG", logger="pyvips"):
        pyvips.Image.black(64, 64).resize(0.5).copy_memory()  # logs "threadpool completed"
        _glib_log(pyvips.GLogLevelFlags.LEVEL_INFO, b"an info line")
        _glib_log(pyvips.GLogLevelFlags.LEVEL_WARNING, b"a warning line")
    vips_lines = [r for r in caplog.records if r.name == "pyvips" and "VIPS:" in r.getMessage()]
    assert [(r.levelname, r.getMessage()) for r in vips_lines] == [
        ("WARNING", "VIPS: a warning line")
    ]
