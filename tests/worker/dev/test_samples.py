"""The sample writers produce real, decodable media, checked with readers other than the probe."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import pillow_heif
import pytest
from PIL import Image

from stages.probe.isobmff import top_level_types
from worker.dev import broken_samples, demo, samples

GPS_IFD = 0x8825


def test_demo_samples_are_one_of_each_kind_plus_broken_files(tmp_path: Path) -> None:
    plain = demo.make_demo_samples(tmp_path / "plain")
    suffixes = {p.suffix for p in plain}
    assert suffixes >= {".jpg", ".png", ".gif", ".heic", ".dng", ".mp4", ".mov", ".webm"}
    paths = demo.make_demo_samples(tmp_path / "demo", include_broken=True)
    assert [p.name for p in paths[: len(plain)]] == [p.name for p in plain]
    broken = {path.name: path for path in paths[len(plain) :]}
    assert all(path.stat().st_size > 0 for path in paths)
    with pytest.raises(OSError, match="Truncated"):  # exists to end FAILED
        Image.open(broken["broken.jpg"]).load()
    with broken["broken.mp4"].open("rb") as file:  # a recording cut before its index
        assert b"moov" not in top_level_types(file, broken["broken.mp4"].stat().st_size)


def test_demo_videos_are_a_phone_clip_an_hdr_clip_and_a_webm(tmp_path: Path) -> None:
    videos = {p.name: p for p in demo.make_demo_samples(tmp_path) if p.suffix != ".jpg"}
    with av.open(str(videos["phone.mov"])) as media:
        assert next(media.decode(video=0)).rotation == -90  # 90 degrees clockwise for display
    with av.open(str(videos["hdr.mp4"])) as media:
        context = media.streams.video[0].codec_context
        assert (context.codec.canonical_name, context.pix_fmt) == ("hevc", "yuv420p10le")
        assert (context.color_primaries, context.color_trc) == (9, 18)  # BT.2020 HLG
    with av.open(str(videos["web.webm"])) as media:
        assert media.streams.video[0].codec_context.codec.canonical_name == "vp9"


def test_jpeg_carries_orientation_and_gps(tmp_path: Path) -> None:
    path = samples.write_jpeg(tmp_path / "a.jpg", 120, 80, orientation=6, gps=(-33.86, 151.21))
    with Image.open(path) as image:
        assert (image.format, image.size, image.mode) == ("JPEG", (120, 80), "RGB")
        exif = image.getexif()
        gps = exif.get_ifd(GPS_IFD)
    assert exif[0x0112] == 6
    assert (gps[1], gps[3]) == ("S", "E")
    assert float(gps[2][0]) == 33
    assert float(gps[4][0]) == 151


def test_jpeg_variants(tmp_path: Path) -> None:
    with Image.open(samples.write_jpeg(tmp_path / "c.jpg", 40, 30, cmyk=True)) as image:
        assert image.mode == "CMYK"
    with Image.open(samples.write_jpeg(tmp_path / "p.jpg", 40, 30, progressive=True)) as image:
        assert image.info.get("progressive") == 1
        assert 0x0112 not in image.getexif()


@pytest.mark.parametrize(
    ("options", "mode"),
    [({"alpha": True}, "RGBA"), ({"bits16": True}, "I;16"), ({"palette": True}, "P")],
)
def test_png_variants(tmp_path: Path, options: dict[str, bool], mode: str) -> None:
    with Image.open(samples.write_png(tmp_path / "a.png", 40, 30, **options)) as image:
        assert (image.format, image.size, image.mode) == ("PNG", (40, 30), mode)


def test_animations_have_their_frames(tmp_path: Path) -> None:
    with Image.open(samples.write_gif(tmp_path / "a.gif", 40, 30, frames=5)) as image:
        assert (image.format, image.n_frames) == ("GIF", 5)
    with Image.open(samples.write_webp(tmp_path / "a.webp", 40, 30, frames=3)) as image:
        assert (image.format, image.n_frames) == ("WEBP", 3)


def test_still_formats_decode(tmp_path: Path) -> None:
    for path, fmt in (
        (samples.write_avif(tmp_path / "a.avif", 48, 32), "AVIF"),
        (samples.write_tiff(tmp_path / "a.tif", 48, 32), "TIFF"),
        (samples.write_webp(tmp_path / "a.webp", 48, 32, lossless=True), "WEBP"),
    ):
        with Image.open(path) as image:
            image.load()
            assert (image.format, image.size) == (fmt, (48, 32))


def test_heic_is_hevc_coded(tmp_path: Path) -> None:
    path = samples.write_heic(tmp_path / "a.heic", 64, 48)
    assert path.read_bytes()[4:12] == b"ftypheic"
    heif = pillow_heif.open_heif(path)
    assert heif.size == (64, 48)
    assert heif.to_pillow().getpixel((0, 0)) is not None  # really decodable


@pytest.mark.parametrize(
    ("container", "codec", "audio"),
    [
        ("mp4", "h264", "aac"),
        ("mov", "h264", "aac"),
        ("mkv", "h264", "aac"),
        ("webm", "vp9", "opus"),
        ("webm", "vp8", "opus"),
        ("avi", "mpeg4", "mp3"),
        ("mp4", "hevc", "aac"),
        ("avi", "mjpeg", "mp3"),
    ],
)
def test_videos_decode_with_their_codecs(
    tmp_path: Path, container: samples.Container, codec: str, audio: str
) -> None:
    path = samples.write_video(
        tmp_path / f"v.{container}",
        container=container,
        codec=codec,
        width=64,
        height=48,
        seconds=0.5,
        fps=10,
    )
    with av.open(str(path)) as media:
        video, sound = media.streams.video[0], media.streams.audio[0]
        assert video.codec_context.codec.canonical_name == codec
        assert sound.codec_context.codec.canonical_name == audio
        frames = list(media.decode(video=0))
    assert len(frames) == 5
    assert (frames[0].width, frames[0].height) == (64, 48)


def test_video_rotation_and_silence(tmp_path: Path) -> None:
    path = samples.write_video(tmp_path / "r.mp4", seconds=0.2, audio=False, rotation=90)
    with av.open(str(path)) as media:
        assert not media.streams.audio
        frame = next(media.decode(video=0))
    assert frame.rotation == -90  # PyAV reads counter-clockwise; the writer takes clockwise


def test_audio_only_file_has_no_video(tmp_path: Path) -> None:
    path = samples.write_audio_only(tmp_path / "a.m4a", seconds=0.5)
    assert path.read_bytes()[8:12] == b"M4A "
    with av.open(str(path)) as media:
        assert not media.streams.video
        assert media.streams.audio[0].codec_context.codec.canonical_name == "aac"


def test_album_art_is_an_attached_picture(tmp_path: Path) -> None:
    path = samples.write_audio_only(tmp_path / "a.mp4", container="mp4", cover_art=True)
    with av.open(str(path)) as media:
        (cover,) = media.streams.video
        assert cover.disposition & av.stream.Disposition.attached_pic


def test_video_variants(tmp_path: Path) -> None:
    ten_bit = samples.write_video(
        tmp_path / "a.mkv", container="mkv", codec="hevc", ten_bit=True, seconds=0.2
    )
    with av.open(str(ten_bit)) as media:
        assert media.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
    uneven = samples.write_video(tmp_path / "v.mp4", seconds=0.5, fps=12, variable_rate=True)
    with av.open(str(uneven)) as media:
        times = sorted(float(frame.time) for frame in media.decode(video=0))
    steps = [round(b - a, 3) for a, b in itertools.pairwise(times)]
    assert min(steps) < 0.05 < 0.12 < max(steps)
    tagged = samples.write_video(
        tmp_path / "t.mov", container="mov", seconds=0.2, tags={"location": "+01.5+002.5/"}
    )
    with av.open(str(tagged)) as media:
        assert media.metadata["location"] == "+01.5+002.5/"


@pytest.mark.parametrize("kind", ["empty", "no-moov", "noise", "damaged"])
def test_broken_videos(tmp_path: Path, kind: broken_samples.BrokenVideo) -> None:
    path = broken_samples.write_broken_video(tmp_path / "b.mp4", kind)
    data = path.read_bytes()
    if kind == "empty":
        assert data == b""
    elif kind == "noise":
        assert len(data) == 64 * 1024
        assert b"ftyp" not in data[:16]
    else:
        with path.open("rb") as file:
            boxes = top_level_types(file, len(data))
        assert (b"moov" in boxes) == (kind == "damaged")
