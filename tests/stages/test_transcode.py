"""The transcode stage on clips encoded here with PyAV: every codec and container, rotation,
HDR, variable frame rate, missing and lone audio, broken files, cancellation."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import pyvips

from stages import BadMediaError, Job, JobCancelled, MediaKind, StageOptions
from stages.photo.render import DEFAULT_RENDITIONS, RenditionSpec
from stages.probe.stage import ProbeStage
from stages.video.poster import VideoStills
from stages.video.quicktime import creation_time, parse_iso6709
from stages.video.stage import TranscodeOptions, TranscodeStage
from stages.video.tonemap import WideSignal, to_sdr
from worker.dev import broken_samples, samples


def make_job(path: Path, workdir: Path, metadata: dict[str, Any], options: StageOptions) -> Job:
    workdir.mkdir(parents=True, exist_ok=True)
    return Job.standalone(path, workdir, kind=MediaKind.VIDEO, metadata=metadata, options=options)


def transcode(path: Path, job_hook: Callable[[Job], None] | None = None, **options: Any) -> Any:
    """Probe, then transcode, as the pipeline does."""
    probed = ProbeStage(StageOptions()).run_sync(make_job(path, path.parent, {}, StageOptions()))
    chosen = TranscodeOptions(**options)
    job = make_job(path, path.parent / f"{path.name}.work", probed.metadata, chosen)
    if job_hook is not None:
        job_hook(job)
    result = TranscodeStage(chosen).run_sync(job)
    json.dumps(result.metadata)  # stored with the item: plain JSON
    return result


@dataclass
class Played:
    """What decoding the whole output with PyAV found."""

    codec: str
    pix_fmt: str
    width: int
    height: int
    frames: int
    seconds: float  # from the first frame's start to the last frame's end
    rotation: int
    audio: str | None
    first: np.ndarray


def play(path: Path) -> Played:
    with av.open(str(path)) as media:
        video = media.streams.video[0]
        frames = list(media.decode(video))
        first = frames[0].to_ndarray(format="rgb24")
        audio = (
            media.streams.audio[0].codec_context.codec.canonical_name
            if media.streams.audio
            else None
        )
        return Played(
            codec=video.codec_context.codec.canonical_name,
            pix_fmt=video.codec_context.pix_fmt or "",
            width=frames[0].width,
            height=frames[0].height,
            frames=len(frames),
            seconds=_span(frames),
            rotation=frames[0].rotation,
            audio=audio,
            first=first,
        )


def _span(frames: list[av.VideoFrame]) -> float:
    times = sorted(float(f.time) for f in frames if f.time is not None)
    step = (times[-1] - times[0]) / max(len(times) - 1, 1)
    return times[-1] - times[0] + step


def renditions(result: Any) -> dict[str, Any]:
    return {r.name: r for r in result.renditions}


def brightness(path: Path) -> float:
    return float(pyvips.Image.new_from_file(str(path)).avg())


def test_declares_the_contract() -> None:
    assert TranscodeStage.name == "transcode"
    assert TranscodeStage.cpu_bound
    assert TranscodeStage.requires == ("probe",)
    assert TranscodeStage.kinds == frozenset({MediaKind.VIDEO})
    assert TranscodeStage.timeout >= 3600
    found = {ep.name: ep for ep in entry_points(group="mediamill.stages")}
    assert found["transcode"].load() is TranscodeStage


CLIPS = [
    # file, writer options, source codec, video copied?, audio out
    ("h264.mp4", {}, "h264", True, "aac"),
    ("h264.mkv", {"container": "mkv"}, "h264", True, "aac"),
    ("h264.mov", {"container": "mov", "audio": False}, "h264", True, None),
    ("hevc.mp4", {"codec": "hevc"}, "hevc", False, "aac"),
    ("hevc10.mkv", {"container": "mkv", "codec": "hevc", "ten_bit": True}, "hevc", False, "aac"),
    ("vp9.webm", {"container": "webm", "codec": "vp9"}, "vp9", False, "aac"),
    ("mpeg4.avi", {"container": "avi", "codec": "mpeg4"}, "mpeg4", False, "mp3"),
    ("mjpeg.avi", {"container": "avi", "codec": "mjpeg", "audio": False}, "mjpeg", False, None),
]


@pytest.mark.parametrize(("name", "options", "codec", "copied", "audio"), CLIPS)
def test_every_clip_becomes_a_playable_h264_mp4_with_a_poster(
    tmp_path: Path, name: str, options: dict[str, Any], codec: str, copied: bool, audio: str | None
) -> None:
    source = samples.write_video(tmp_path / name, seconds=1.0, fps=12, **options)
    result = transcode(source)

    made = renditions(result)
    assert set(made) == {"video", "thumb", "preview", "preview_anim"}
    video = made["video"]
    assert video.content_type == "video/mp4"
    assert video.path.read_bytes()[4:8] == b"ftyp"
    played = play(video.path)
    assert (played.codec, played.pix_fmt, played.audio) == ("h264", "yuv420p", audio)
    assert (played.width, played.height) == (320, 240) == (video.width, video.height)
    original = play(source)
    assert played.frames == original.frames
    assert abs(played.seconds - original.seconds) <= 1 / 12 + 1e-3  # within a frame
    meta = result.metadata
    assert meta["video_codec"] == codec
    assert meta["encoding"]["video"] == ("copy" if copied else "h264")
    assert (meta["width"], meta["height"], meta["rotation"]) == (320, 240, 0)
    assert meta["fps"] == 12.0
    assert meta["variable_frame_rate"] is False
    assert meta["audio_codec"] == (None if audio is None else original_audio(source))
    assert meta["placeholder"]["thumbhash"]
    assert brightness(made["thumb"].path) > 60  # the test card, not a black frame
    assert made["preview_anim"].extra["frames"] >= 2
    assert result.warnings == []


def original_audio(path: Path) -> str:
    with av.open(str(path)) as media:
        return media.streams.audio[0].codec_context.codec.canonical_name


def test_facts_of_a_ten_bit_hevc_clip(tmp_path: Path) -> None:
    source = samples.write_video(tmp_path / "a.mp4", codec="hevc", ten_bit=True, seconds=0.5)
    meta = transcode(source).metadata
    assert (meta["bit_depth"], meta["pixel_format"]) == (10, "yuv420p10le")
    assert meta["video_profile"] == "Main 10"
    assert (meta["audio_channels"], meta["audio_sample_rate"]) == (2, 48000)
    assert meta["bitrate"] > 0
    assert meta["duration"] == pytest.approx(0.5, abs=0.05)


def test_rotated_phone_clip_is_turned_upright_and_carries_no_rotation(tmp_path: Path) -> None:
    source = samples.write_video(tmp_path / "phone.mov", container="mov", rotation=90, seconds=0.5)
    result = transcode(source)
    made = renditions(result)
    played = play(made["video"].path)
    assert (played.width, played.height, played.rotation) == (240, 320, 0)
    assert (made["video"].width, made["video"].height) == (240, 320)
    assert (result.metadata["width"], result.metadata["height"]) == (240, 320)
    assert result.metadata["rotation"] == 90
    # The test card's yellow disc sits left of centre; turned clockwise it sits above centre.
    assert is_yellow(played.first[320 // 3, 240 // 2])
    assert not is_yellow(played.first[320 * 2 // 3, 240 // 2])
    thumb = pyvips.Image.new_from_file(str(made["thumb"].path))
    assert (thumb.width, thumb.height) == (240, 320)


def is_yellow(pixel: np.ndarray) -> bool:
    red, green, blue = (int(v) for v in pixel)
    return red > 180 and green > 170 and blue < 110


def test_large_fast_clip_is_scaled_to_the_short_side_and_capped_in_rate(tmp_path: Path) -> None:
    source = samples.write_video(tmp_path / "big.mp4", width=480, height=270, seconds=0.5, fps=50)
    result = transcode(source, max_short_side=144, max_fps=25)
    played = play(renditions(result)["video"].path)
    assert (played.width, played.height) == (256, 144)
    assert played.frames == pytest.approx(13, abs=1)  # 0.5 s at 25 fps
    assert result.metadata["encoding"]["reasons"] == ["larger than 144 px", "faster than 25 fps"]


def test_small_clip_is_never_upscaled(tmp_path: Path) -> None:
    source = samples.write_video(
        tmp_path / "s.webm", container="webm", codec="vp9", width=160, height=120, seconds=0.5
    )
    played = play(renditions(transcode(source))["video"].path)
    assert (played.width, played.height) == (160, 120)


def test_variable_frame_rate_keeps_its_timing(tmp_path: Path) -> None:
    source = samples.write_video(
        tmp_path / "vfr.mkv", container="mkv", codec="hevc", variable_rate=True, seconds=1.0, fps=12
    )
    result = transcode(source)
    assert result.metadata["variable_frame_rate"] is True
    with av.open(str(renditions(result)["video"].path)) as media:
        times = [float(f.time) for f in media.decode(video=0)]
    steps = np.diff(sorted(times))
    assert steps.max() > 2.5 * steps.min()  # still uneven: not resampled to a fixed rate
    assert abs(play(source).seconds - (times[-1] - times[0])) < 0.2


def test_location_and_creation_time_come_from_the_quicktime_tags(tmp_path: Path) -> None:
    tags = {"location": "+37.3349-122.0090+010.000/", "creation_time": "2024-05-01T10:00:00Z"}
    source = samples.write_video(tmp_path / "gps.mov", container="mov", seconds=0.3, tags=tags)
    result = transcode(source)
    assert result.metadata["location"] == {
        "latitude": 37.3349,
        "longitude": -122.009,
        "altitude": 10.0,
    }
    assert result.metadata["created_at"] == "2024-05-01T10:00:00Z"
    # The published video is copied stream by stream: the position does not travel with it.
    with av.open(str(renditions(result)["video"].path)) as media:
        assert not any("location" in key for key in media.metadata)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+48.8584+002.2945/", {"latitude": 48.8584, "longitude": 2.2945}),
        (
            "-3351.5+15112.5+12.5/",
            {"latitude": -33.858333, "longitude": 151.208333, "altitude": 12.5},
        ),
        ("+404530-0735930/", {"latitude": 40.758333, "longitude": -73.991667}),
        ("+95.0+010.0/", None),
        ("somewhere", None),
    ],
)
def test_iso6709_positions(text: str, expected: dict[str, float] | None) -> None:
    assert parse_iso6709(text) == expected


def test_creation_time_prefers_apple_local_time_and_ignores_zeroed_clocks() -> None:
    apple = {"com.apple.quicktime.creationdate": "2024-05-01T12:00:00+0200"}
    assert creation_time(apple) == "2024-05-01T10:00:00Z"
    assert creation_time({"creation_time": "1970-01-01T00:00:00.000000Z"}) is None


def test_audio_only_file_fails_with_no_video_stream(tmp_path: Path) -> None:
    with pytest.raises(BadMediaError, match="no video stream"):
        transcode(samples.write_audio_only(tmp_path / "a.mp4", container="mp4", seconds=0.3))


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("empty", "empty"),
        ("no-moov", "without a moov box"),
        ("noise", "unsupported media type"),
    ],
)
def test_broken_files_fail_with_a_readable_reason(
    tmp_path: Path, kind: broken_samples.BrokenVideo, reason: str
) -> None:
    with pytest.raises(BadMediaError, match=reason):
        transcode(broken_samples.write_broken_video(tmp_path / "broken.mp4", kind))


def test_a_video_none_of_whose_frames_decodes_fails_with_a_readable_reason(
    tmp_path: Path,
) -> None:
    """Its boxes are whole but its media data is zeros: FFmpeg finds no pixel format."""
    clip = bytearray(
        samples.write_video(tmp_path / "clip.mp4", seconds=1.0, audio=False).read_bytes()
    )
    mdat, moov = clip.index(b"mdat") + 4, clip.index(b"moov") - 4
    clip[mdat:moov] = bytes(moov - mdat)
    blank = tmp_path / "blank.mp4"
    blank.write_bytes(bytes(clip))
    with pytest.raises(BadMediaError, match="no frame of the h264 video stream decodes"):
        transcode(blank)


def test_corrupt_packets_in_the_middle_are_skipped_with_a_warning(tmp_path: Path) -> None:
    source = broken_samples.write_broken_video(tmp_path / "damaged.mp4", "damaged")
    result = transcode(source)
    assert len(result.warnings) == 1
    assert "corrupt" in result.warnings[0]
    played = play(renditions(result)["video"].path)
    # Frames up to the next keyframe after the damage are lost; the rest of the clip is there.
    assert played.frames >= 48  # of 72
    assert played.seconds == pytest.approx(3.0, abs=0.05)
    with pytest.raises(BadMediaError, match="too corrupt"):
        transcode(source, max_corrupt_fraction=0.0)


# --- HDR ---------------------------------------------------------------------------------------

_HLG = (0.17883277, 0.28466892, 0.55991073)
_BT709_TO_BT2020 = np.array(
    [[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]]
)


def hlg_code_values(srgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """10-bit BT.2020 HLG Y'CbCr of an SDR colour shown at HDR reference white (BT.2408)."""
    display = (np.array(srgb) / 255.0) ** 2.4 * 203 / 1000  # display light, 1.0 = 1000 nits
    display = _BT709_TO_BT2020 @ display
    luma = display @ np.array([0.2627, 0.6780, 0.0593])
    scene = display * luma ** ((1 - 1.2) / 1.2)  # inverse of the HLG OOTF (system gamma 1.2)
    a, b, c = _HLG
    signal = np.where(
        scene <= 1 / 12, np.sqrt(3 * scene), a * np.log(np.maximum(12 * scene - b, 1e-9)) + c
    )
    y = signal @ np.array([0.2627, 0.6780, 0.0593])
    cb, cr = (signal[2] - y) / 1.8814, (signal[0] - y) / 1.4746
    return round(64 + 876 * y), round(512 + 896 * cb), round(512 + 896 * cr)


def write_hlg_clip(path: Path, top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Path:
    """A 10-bit HEVC HLG clip as an iPhone records: ``top`` and ``bottom`` halves of flat colour."""
    width, height = 160, 120
    with av.open(str(path), "w", format="mp4") as output:
        stream: Any = output.add_stream("libx265", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p10le"
        stream.options = {"preset": "ultrafast", "x265-params": "log-level=error", "crf": "12"}
        context = stream.codec_context
        context.color_primaries, context.color_trc, context.colorspace = 9, 18, 9
        frame = av.VideoFrame(width, height, "yuv420p10le")
        for plane_index, plane in enumerate(frame.planes):
            rows = height if plane_index == 0 else height // 2
            values = np.empty((rows, plane.line_size // 2), dtype="<u2")
            values[: rows // 2] = hlg_code_values(top)[plane_index]
            values[rows // 2 :] = hlg_code_values(bottom)[plane_index]
            plane.update(values.tobytes())
        for index in range(5):
            frame.pts, frame.time_base = index, Fraction(1, 10)
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return path


def test_hlg_ten_bit_comes_out_sdr_and_not_washed_out(tmp_path: Path) -> None:
    grey, red = (128, 128, 128), (200, 60, 40)
    source = write_hlg_clip(tmp_path / "hlg.mp4", grey, red)
    result = transcode(source)
    assert result.metadata["hdr"] == "hlg"
    assert result.metadata["bit_depth"] == 10
    with av.open(str(renditions(result)["video"].path)) as media:
        stream = media.streams.video[0]
        assert (stream.codec_context.color_primaries, stream.codec_context.color_trc) == (1, 1)
        rgb = next(media.decode(stream)).to_ndarray(format="rgb24")
    top, bottom = rgb[20, 80].astype(int), rgb[100, 80].astype(int)
    assert np.abs(top - grey).max() <= 12, top
    assert np.abs(bottom - red).max() <= 14, bottom
    # Washed out means grey-ish: the red keeps its saturation.
    assert bottom[0] - bottom[2] > 130


def test_tone_curve_rolls_highlights_off_instead_of_clipping() -> None:
    signal = np.array([[0.75, 0.75, 0.75], [0.85, 0.85, 0.85], [1.0, 1.0, 1.0]])
    ref, bright, peak = to_sdr(signal, WideSignal.HLG)[:, 0]
    assert 0.9 < ref < bright < peak <= 1.0
    assert peak == pytest.approx(1.0, abs=1e-3)


# --- cancellation ------------------------------------------------------------------------------


class CancelAfter(threading.Event):
    """Reports cancelled from the ``calls``-th check on: a shutdown mid-transcode."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.calls = calls

    def is_set(self) -> bool:
        self.calls -= 1
        return self.calls <= 0


def test_cancelled_transcode_stops_and_leaves_no_file_open(tmp_path: Path) -> None:
    source = samples.write_video(tmp_path / "long.webm", container="webm", codec="vp9", seconds=3.0)
    workdir = tmp_path / "long.webm.work"

    def cancel_soon(job: Job) -> None:
        job.cancelled = CancelAfter(4)

    with pytest.raises(JobCancelled):
        transcode(source, job_hook=cancel_soon)
    assert not (workdir / "video.mp4").exists()
    open_files = {
        os.readlink(f"/proc/self/fd/{fd}")
        for fd in os.listdir("/proc/self/fd")
        if os.path.exists(f"/proc/self/fd/{fd}")
    }
    assert not [name for name in open_files if name.startswith(str(workdir))]


def test_each_still_is_encoded_as_soon_as_its_frames_are_in(tmp_path: Path) -> None:
    """The preview needs the first second only: it is written while the poster's window is open."""
    preview = RenditionSpec(name="preview_anim", size=64, format="webp", quality=60)
    rng = np.random.default_rng(3)
    with VideoStills(
        tmp_path,
        renditions=DEFAULT_RENDITIONS,
        animation=preview,
        poster_window=10.0,
        animation_seconds=1.0,
        animation_fps=4.0,
    ) as stills:
        for index in range(20):  # two seconds at 10 fps
            pixels = rng.integers(40, 220, (96, 128, 3), dtype=np.uint8)
            stills.offer(av.VideoFrame.from_ndarray(pixels, format="rgb24"), index / 10)
        deadline = time.monotonic() + 10
        while not (tmp_path / "preview_anim.webp").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (tmp_path / "preview_anim.webp").exists()
        assert not (tmp_path / "thumb.webp").exists()  # the poster may still find a better frame
        stills.finish()
    made, placeholder = stills.result()
    assert {r.name for r in made} == {"thumb", "preview", "preview_anim"}
    assert placeholder
