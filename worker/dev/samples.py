"""Real encoded sample media for ``mediamill demo`` and for tests.

Each writer encodes a small synthetic picture (gradients and shapes, so encoders have structure
to work on) with the same libraries the stages decode with; sizes default small to stay fast.
"""

from __future__ import annotations

import io
import math
from array import array
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import pillow_heif
from PIL import Image, ImageChops, ImageDraw
from PIL.TiffImagePlugin import IFDRational

Container = Literal["mp4", "mov", "mkv", "webm", "avi"]

# Audio codec per container: AAC where the container carries it, Opus for WebM, MP3 for AVI.
_AUDIO_CODEC: dict[str, str] = {
    "mp4": "aac",
    "mov": "aac",
    "mkv": "aac",
    "webm": "libopus",
    "avi": "libmp3lame",
}
_CONTAINER_FORMAT: dict[str, str] = {
    "mp4": "mp4",
    "mov": "mov",
    "mkv": "matroska",
    "webm": "webm",
    "avi": "avi",
}
_ENCODER: dict[str, str] = {
    "h264": "libx264",
    "hevc": "libx265",
    "vp9": "libvpx-vp9",
    "vp8": "libvpx",
}
_GPS_IFD = 0x8825
_EXIF_IFD = 0x8769
_ORIENTATION_TAG = 0x0112


def picture(width: int, height: int, *, shift: int = 0, mode: str = "RGB") -> Image.Image:
    """A test card: colour gradients, a circle and a bar, moved ``shift`` pixels to the right."""
    red = Image.linear_gradient("L").rotate(90).resize((width, height))
    green = Image.linear_gradient("L").resize((width, height))
    blue = Image.radial_gradient("L").resize((width, height))
    image = Image.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(image)
    radius = max(2, min(width, height) // 5)
    cx, cy = width // 3, height // 2
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=(250, 240, 30))
    draw.rectangle(
        (width * 3 // 5, height // 6, width * 3 // 5 + max(2, width // 12), height * 5 // 6)
    )
    if shift:
        image = ImageChops.offset(image, shift % width, 0)
    return image if mode == "RGB" else image.convert(mode)


def write_jpeg(
    path: Path,
    width: int = 1200,
    height: int = 800,
    *,
    orientation: int | None = None,
    gps: tuple[float, float] | None = None,
    quality: int = 85,
    progressive: bool = False,
    cmyk: bool = False,
    camera: bool = False,
    icc_profile: bytes | None = None,
    image: Image.Image | None = None,
) -> Path:
    """A JPEG photo, optionally with EXIF orientation, GPS position (latitude, longitude),
    a phone camera's EXIF facts and an embedded ICC profile; ``image`` replaces the test card."""
    exif = camera_exif() if camera else Image.Exif()
    if orientation is not None:
        exif[_ORIENTATION_TAG] = orientation
    if gps is not None:
        exif[_GPS_IFD] = _gps_ifd(*gps)
    if image is None:
        image = picture(width, height, mode="CMYK" if cmyk else "RGB")
    extra = {"icc_profile": icc_profile} if icc_profile else {}
    image.save(path, "JPEG", quality=quality, progressive=progressive, exif=exif.tobytes(), **extra)
    return path


def camera_exif() -> Image.Exif:
    """EXIF as a phone writes it: make, model, lens, capture time with offset, exposure."""
    exif = Image.Exif()
    exif[0x010F] = "Apple"
    exif[0x0110] = "iPhone 15 Pro"
    exif[0x0132] = "2024:07:14 18:03:11"
    exif[_EXIF_IFD] = {
        0x9003: "2024:07:14 18:03:11",
        0x9011: "+02:00",
        0x9291: "250",
        0x829A: IFDRational(1, 120),
        0x829D: IFDRational(178, 100),
        0x8827: 64,
        0x920A: IFDRational(6860, 1000),
        0xA405: 24,
        0xA433: "Apple",
        0xA434: "iPhone 15 Pro back triple camera 6.86mm f/1.78",
    }
    return exif


def _gps_ifd(latitude: float, longitude: float) -> dict[int, Any]:
    def dms(value: float) -> tuple[float, float, float]:
        value = abs(value)
        degrees = int(value)
        minutes = int((value - degrees) * 60)
        seconds = round(((value - degrees) * 60 - minutes) * 60, 4)
        return (float(degrees), float(minutes), seconds)

    return {
        1: "N" if latitude >= 0 else "S",
        2: dms(latitude),
        3: "E" if longitude >= 0 else "W",
        4: dms(longitude),
    }


def write_png(
    path: Path,
    width: int = 320,
    height: int = 240,
    *,
    alpha: bool = True,
    bits16: bool = False,
    palette: bool = False,
) -> Path:
    """A PNG: RGBA by default, or 16-bit greyscale, or palette (indexed) colour."""
    image = picture(width, height)
    if bits16:
        image = image.convert("I").point(lambda value: value * 257).convert("I;16")
    elif palette:
        image = image.quantize(colors=64)
    elif alpha:
        mask = Image.radial_gradient("L").resize((width, height))
        image.putalpha(ImageChops.invert(mask))
    image.save(path, "PNG")
    return path


def _frames(width: int, height: int, count: int) -> Iterator[Image.Image]:
    step = max(1, width // max(count, 1))
    for index in range(count):
        yield picture(width, height, shift=index * step)


def write_gif(path: Path, width: int = 160, height: int = 120, *, frames: int = 4) -> Path:
    """An animated GIF with ``frames`` frames (a still GIF when 1)."""
    images = [
        image.convert("P", palette=Image.Palette.ADAPTIVE)
        for image in _frames(width, height, frames)
    ]
    images[0].save(path, "GIF", save_all=frames > 1, append_images=images[1:], duration=100, loop=0)
    return path


def write_webp(
    path: Path, width: int = 320, height: int = 240, *, frames: int = 1, lossless: bool = False
) -> Path:
    """A WebP, animated when ``frames`` > 1."""
    images = list(_frames(width, height, frames))
    images[0].save(
        path,
        "WEBP",
        save_all=frames > 1,
        append_images=images[1:],
        duration=100,
        lossless=lossless,
        quality=80,
    )
    return path


def write_avif(path: Path, width: int = 320, height: int = 240) -> Path:
    """A still AVIF (Pillow's libavif encoder)."""
    picture(width, height).save(path, "AVIF", quality=60, speed=10)
    return path


def write_tiff(
    path: Path, width: int = 320, height: int = 240, *, compression: str = "tiff_lzw"
) -> Path:
    """A TIFF, LZW-compressed by default."""
    picture(width, height).save(path, "TIFF", compression=compression)
    return path


def write_heic(
    path: Path,
    width: int = 320,
    height: int = 240,
    *,
    quality: int = 60,
    gps: tuple[float, float] | None = None,
) -> Path:
    """A HEIC (HEVC-coded HEIF) as phones write, through pillow-heif's x265 encoder, with a
    camera's EXIF (and a GPS position, if given)."""
    exif = camera_exif()
    if gps is not None:
        exif[_GPS_IFD] = _gps_ifd(*gps)
    heif: Any = pillow_heif.from_pillow(picture(width, height))
    heif.save(path, quality=quality, exif=exif.tobytes())
    return path


def write_video(
    path: Path,
    *,
    container: Container = "mp4",
    codec: str = "h264",
    width: int = 320,
    height: int = 240,
    seconds: float = 2.0,
    fps: int = 24,
    audio: bool = True,
    rotation: int = 0,
    ten_bit: bool = False,
    hlg: bool = False,
    variable_rate: bool = False,
    tags: dict[str, str] | None = None,
    metadata_keys: bool = False,
) -> Path:
    """A short video: ``codec`` is h264, hevc, vp9, vp8, mpeg4 or mjpeg; audio is a 440 Hz tone.

    ``rotation`` (clockwise degrees for display) is written as the stream's display matrix;
    ``ten_bit`` encodes 10-bit 4:2:0 (HEVC, VP9); ``hlg`` tags the stream BT.2020 HLG as an
    iPhone does; ``variable_rate`` spaces frames unevenly; ``tags`` become container metadata
    (``location``, ``creation_time``: the MOV/MP4 muxer writes them as a phone does);
    ``metadata_keys`` writes them as QuickTime ``mdta`` keys instead, as an iPhone's MOV has them.
    """
    pix_fmt = "yuv420p10le" if ten_bit else "yuvj420p" if codec == "mjpeg" else "yuv420p"
    muxer = {"movflags": "use_metadata_tags"} if metadata_keys else {}
    with av.open(str(path), mode="w", format=_CONTAINER_FORMAT[container], options=muxer) as output:
        output.metadata.update(tags or {})
        video: Any = output.add_stream(_ENCODER.get(codec, codec), rate=fps)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        clock = Fraction(1, 1000) if variable_rate else Fraction(1, fps)
        # A millisecond clock lets variable-rate frames land where they are meant to.
        video.codec_context.time_base = clock
        video.options = _VIDEO_OPTIONS.get(codec, {})
        if hlg:
            context = video.codec_context
            context.color_primaries, context.color_trc, context.colorspace = 9, 18, 9  # BT.2020
        if rotation:
            # PyAV takes counter-clockwise degrees, like ffmpeg's display matrix.
            video.set_display_rotation(-rotation)
        sound: Any = output.add_stream(_AUDIO_CODEC[container], rate=48000) if audio else None
        count = max(1, round(seconds * fps))
        for index, image in enumerate(_frames(width, height, count)):
            frame = av.VideoFrame.from_image(image)  # type: ignore[no-untyped-call]  # PyAV stub
            if pix_fmt != "yuv420p":
                frame = frame.reformat(format=pix_fmt, dst_colorspace=9 if hlg else None)
            frame.pts, frame.time_base = _frame_time(index, fps, variable_rate), clock
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
        if sound is not None:
            _encode_tone(output, sound, seconds)
    return path


_VIDEO_OPTIONS: dict[str, dict[str, str]] = {
    "h264": {"preset": "ultrafast"},
    # A keyframe a second, as phones record: damage stays within its second.
    "hevc": {"preset": "ultrafast", "x265-params": "log-level=error:keyint=24"},
    "vp9": {"deadline": "realtime", "cpu-used": "8"},
    "vp8": {"deadline": "realtime", "cpu-used": "8"},
}


def _frame_time(index: int, fps: int, variable_rate: bool) -> int:
    """The frame's pts: steady, or (variable) bursts at twice the rate, then pauses."""
    if not variable_rate:
        return index
    # Pairs of frames half a period apart: the mean rate stays ``fps``, the spacing does not.
    return round((index // 2 * 2 + (index % 2) * 0.5) * 1000 / fps)


_AUDIO_ONLY: dict[str, tuple[str, str]] = {  # container: (FFmpeg muxer, audio encoder)
    "m4a": ("ipod", "aac"),
    "mp4": ("mp4", "aac"),
    "mp3": ("mp3", "libmp3lame"),
    "wav": ("wav", "pcm_s16le"),
    "webm": ("webm", "libopus"),
    "mkv": ("matroska", "aac"),
}


def write_audio_only(
    path: Path, *, seconds: float = 1.0, container: str = "m4a", cover_art: bool = False
) -> Path:
    """An audio-only file: by default AAC in an MPEG-4 container, as an .m4a is.

    ``cover_art`` adds album art the way music files carry it: a one-picture video stream
    marked as an attached picture (MP4 container only).
    """
    muxer, encoder = _AUDIO_ONLY[container]
    with av.open(str(path), mode="w", format=muxer) as output:
        rate = 44100 if container == "mp3" else 48000
        sound = output.add_stream(encoder, rate=rate)
        if cover_art:
            _attach_cover(output, picture(64, 64))
        _encode_tone(output, sound, seconds, rate)
    return path


def _attach_cover(output: Any, image: Image.Image) -> None:
    cover: Any = output.add_stream("png")
    cover.width, cover.height, cover.pix_fmt = image.width, image.height, "rgb24"
    cover.disposition = av.stream.Disposition.attached_pic
    encoded = io.BytesIO()
    image.save(encoded, "PNG")
    packet = av.Packet(encoded.getvalue())
    packet.stream, packet.pts, packet.dts, packet.time_base = cover, 0, 0, Fraction(1, 90000)
    output.mux(packet)


def _encode_tone(output: Any, stream: Any, seconds: float, rate: int = 48000) -> None:
    chunk = 1024
    total = int(seconds * rate)
    for start in range(0, total, chunk):
        samples = min(chunk, total - start)
        tone = array(
            "h",
            (int(8000 * math.sin(2 * math.pi * 440 * (start + i) / rate)) for i in range(samples)),
        )
        frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
        frame.planes[0].update(tone.tobytes())
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        output.mux(stream.encode(frame))
    output.mux(stream.encode(None))
