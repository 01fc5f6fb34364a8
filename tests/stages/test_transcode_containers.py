"""Every container the probe accepts, remuxed (web-safe H.264) and encoded, on clips made here.

The H.264 clips have B-frames (x264's ``superfast``), as phones and cameras record: their
packets decode in another order than they show, which is what makes copying timestamps hard.
Every output must pass ``verify_video`` with the frame count and duration a decoder finds in
the input, and decode to that many frames.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from stages import Job, MediaKind, StageOptions
from stages.probe.stage import ProbeStage
from stages.video.checks import verify_video
from stages.video.stage import TranscodeOptions, TranscodeStage

FPS = 24
SIZE = (320, 240)
# The probe's formats (stages/probe/sniff.py; 3GP is sniffed as MP4) and how FFmpeg writes each.
MUXERS = {
    "mp4": "mp4",
    "3gp": "3gp",
    "mov": "mov",
    "mkv": "matroska",
    "webm": "webm",
    "avi": "avi",
}
ENCODERS: dict[str, tuple[str, dict[str, str]]] = {
    "h264": ("libx264", {"preset": "superfast", "bf": "2", "g": "12"}),
    "hevc": ("libx265", {"preset": "ultrafast", "x265-params": "log-level=error"}),
    "mpeg4": ("mpeg4", {}),
    "vp9": ("libvpx-vp9", {"deadline": "realtime", "cpu-used": "8"}),
    "vp8": ("libvpx", {"deadline": "realtime", "cpu-used": "8"}),
}


def write_clip(
    path: Path,
    codec: str,
    audio: str | None,
    *,
    frames: int = 30,
    drop_first: int = 0,
    b_frames: bool = True,
) -> Path:
    """``frames`` frames of a moving gradient at 24 fps, with ``audio`` (an encoder) as a tone.

    ``drop_first`` leaves out the first packets in decoding order: a clip cut mid-GOP.
    """
    encoder, options = ENCODERS[codec]
    if not b_frames:
        options = {**options, "bf": "0"}
    with av.open(str(path), "w", format=MUXERS[path.suffix[1:]]) as output:
        video: Any = output.add_stream(encoder, rate=FPS)
        video.width, video.height, video.pix_fmt = *SIZE, "yuv420p"
        video.codec_context.time_base = Fraction(1, FPS)
        video.options = options
        sound: Any = output.add_stream(audio, rate=48000) if audio else None
        written = 0
        for packets in (_encode(video, index) for index in range(frames)):
            for packet in packets:
                written += 1
                if written > drop_first:
                    output.mux(packet)
        output.mux(video.encode(None))
        if sound is not None:
            _tone(output, sound, frames / FPS)
    return path


def _encode(video: Any, index: int) -> list[av.Packet]:
    x = np.arange(SIZE[0])[None, :, None]
    y = np.arange(SIZE[1])[:, None, None]
    pixels = ((x * 2 + y + index * 9) % 256 * np.array([1.0, 0.6, 0.3])).astype(np.uint8)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
    frame.pts, frame.time_base = index, Fraction(1, FPS)
    return list(video.encode(frame))


def _tone(output: Any, sound: Any, seconds: float) -> None:
    rate, chunk = 48000, 1024
    total = int(seconds * rate)
    for start in range(0, total, chunk):
        count = min(chunk, total - start)
        wave = 0.2 * np.sin(2 * math.pi * 440 * (start + np.arange(count)) / rate)
        frame = av.AudioFrame.from_ndarray(wave.astype(np.float32)[None, :], format="flt")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        output.mux(sound.encode(frame))
    output.mux(sound.encode(None))


@dataclass(frozen=True)
class Decoded:
    """What a decoder makes of a file's video: its frames and how long they show."""

    frames: int
    seconds: float
    times: tuple[float, ...]  # in the order the decoder gives the frames: display order
    in_order: bool


def decode(path: Path) -> Decoded:
    with av.open(str(path)) as media:
        shown = [float(f.time) for f in media.decode(video=0) if f.time is not None]
    times = sorted(shown)
    return Decoded(len(times), times[-1] - times[0] + 1 / FPS, tuple(shown), shown == times)


def transcode(path: Path, **options: Any) -> Any:
    """Probe, then transcode, as the pipeline does."""
    workdir = path.parent / f"{path.name}.work"
    workdir.mkdir()
    probe = Job.standalone(path, path.parent, options=StageOptions())
    probed = ProbeStage(StageOptions()).run_sync(probe)
    chosen = TranscodeOptions(**options)
    job = Job.standalone(
        path, workdir, kind=MediaKind.VIDEO, metadata=probed.metadata, options=chosen
    )
    result = TranscodeStage(chosen).run_sync(job)
    json.dumps(result.metadata)
    return result


def video_of(result: Any) -> Any:
    return next(r for r in result.renditions if r.name == "video")


def assert_faithful(source: Path, result: Any, size: tuple[int, int] = SIZE) -> Decoded:
    """The output holds the input's frames, for as long, and passes the publish check too."""
    video, expected = video_of(result), decode(source)
    checked = verify_video(
        video.path, frames=expected.frames, duration=expected.seconds, width=size[0], height=size[1]
    )
    assert checked.duration == video.extra["duration"]  # the rendition states its real length
    # What the publish stage checks, exactly so.
    verify_video(
        video.path, duration=video.extra.get("duration"), width=video.width, height=video.height
    )
    out = decode(video.path)
    assert out.in_order  # each frame shown at its time: none out of order
    assert out.frames == expected.frames
    assert out.seconds == pytest.approx(expected.seconds, abs=1.5 / FPS)
    return out


CASES = [
    # file, video codec, audio encoder, what the stage does with the video, and why
    ("h264.mp4", "h264", "aac", "copy", None),
    ("hevc.mp4", "hevc", "aac", "h264", "codec hevc"),
    ("h264.3gp", "h264", "aac", "copy", None),
    ("mpeg4.3gp", "mpeg4", "aac", "h264", "codec mpeg4"),
    ("h264.mov", "h264", "aac", "copy", None),
    ("hevc.mov", "hevc", None, "h264", "codec hevc"),
    ("h264.mkv", "h264", "aac", "copy", None),
    ("vp9.mkv", "vp9", "libopus", "h264", "codec vp9"),
    ("vp9.webm", "vp9", "libopus", "h264", "codec vp9"),
    ("vp8.webm", "vp8", None, "h264", "codec vp8"),
    # AVI keeps decoding times only: copied, its B-frames would show out of order.
    ("h264.avi", "h264", "libmp3lame", "h264", "B-frames in AVI"),
    ("mpeg4.avi", "mpeg4", "libmp3lame", "h264", "codec mpeg4"),
]


@pytest.mark.parametrize(("name", "codec", "audio", "action", "reason"), CASES)
def test_every_container_comes_out_whole(
    tmp_path: Path, name: str, codec: str, audio: str | None, action: str, reason: str | None
) -> None:
    source = write_clip(tmp_path / name, codec, audio)
    result = transcode(source)
    assert result.metadata["encoding"]["video"] == action
    assert result.metadata["encoding"]["reasons"] == ([reason] if reason else [])
    assert result.warnings == []
    assert_faithful(source, result)


def test_h264_without_b_frames_in_avi_is_copied(tmp_path: Path) -> None:
    source = write_clip(tmp_path / "ip.avi", "h264", None, b_frames=False)
    result = transcode(source)
    assert result.metadata["encoding"]["video"] == "copy"
    assert_faithful(source, result)


@pytest.mark.parametrize("name", ["h264.mp4", "h264.3gp", "h264.mov", "h264.mkv", "h264.avi"])
def test_web_safe_video_forced_to_encode_comes_out_whole(tmp_path: Path, name: str) -> None:
    source = write_clip(tmp_path / name, "h264", None)
    result = transcode(source, max_short_side=144)
    assert result.metadata["encoding"]["video"] == "h264"
    assert_faithful(source, result, size=(192, 144))


def lacks_dts(path: Path) -> list[int]:
    """The (1-based) numbers of the video packets with data but no DTS, as FFmpeg demuxes them."""
    with av.open(str(path)) as media:
        packets = [p for p in media.demux(video=0) if p.size]
        return [number for number, p in enumerate(packets, 1) if p.dts is None]


def test_matroska_packets_without_dts_are_all_copied(tmp_path: Path) -> None:
    """The case is real: FFmpeg's Matroska demuxer gives the first packets of H.264 with
    B-frames no DTS, and the first of them is the keyframe (the old remux dropped them, and the
    video did not decode at all). WebM holds VP8, VP9 or AV1, whose packets never reorder, so
    its DTS are always derived; it shares this demuxer."""
    source = write_clip(tmp_path / "bframes.mkv", "h264", "aac")
    missing = lacks_dts(source)
    assert missing
    assert missing[0] == 1  # the keyframe
    result = transcode(source)
    assert result.metadata["encoding"] == {"video": "copy", "audio": "copy", "reasons": []}
    out = assert_faithful(source, result)
    assert out.times == decode(source).times  # every frame at its own time
    assert lacks_dts(video_of(result).path) == []


def remux(source: Path, path: Path, change: dict[int, int]) -> Path:
    """``source``'s packets in Matroska, packet number ``n`` (of all streams) at ``change[n]``'s
    timestamps: Matroska takes timestamps that repeat, MP4 does not."""
    with av.open(str(source)) as media, av.open(str(path), "w", format="matroska") as output:
        streams = {s.index: output.add_stream_from_template(s) for s in media.streams}
        packets = [p for p in media.demux() if p.size]
        stamps = [(p.pts, p.dts) for p in packets]  # muxing rescales a packet in place
        for number, packet in enumerate(packets, 1):
            if number in change:
                packet.pts, packet.dts = stamps[change[number] - 1]
            packet.stream = streams[packet.stream_index]
            output.mux(packet)
    return path


def numbers_of(source: Path, kind: str) -> list[int]:
    with av.open(str(source)) as media:
        return [
            n
            for n, p in enumerate((p for p in media.demux() if p.size), 1)
            if p.stream.type == kind
        ]


def test_video_whose_timestamps_repeat_is_encoded_instead_of_copied(tmp_path: Path) -> None:
    """A 1.2 s MP4 from a 4 s Matroska file, once: the muxer's refusal was taken for damage."""
    clip = write_clip(tmp_path / "steady.mp4", "h264", None, frames=96)
    video = numbers_of(clip, "video")
    source = remux(clip, tmp_path / "repeats.mkv", {video[29]: video[28]})
    result = transcode(source)
    encoding = result.metadata["encoding"]
    assert encoding["video"] == "h264"
    # Matroska stores presentation times: FFmpeg's derived DTS repeat a packet or so later.
    (reason,) = encoding["reasons"]
    assert reason.startswith("video cannot be copied: decoding timestamps go back or repeat")
    played = decode(video_of(result).path)
    assert played.frames == decode(source).frames - 1  # the repeat: one frame time, one frame
    assert played.seconds == pytest.approx(4.0, abs=1 / FPS)


def test_audio_whose_timestamps_repeat_is_encoded_and_the_video_still_copied(
    tmp_path: Path,
) -> None:
    clip = write_clip(tmp_path / "steady.mp4", "h264", "aac", frames=48)
    audio = numbers_of(clip, "audio")
    source = remux(clip, tmp_path / "repeats.mkv", {audio[10]: audio[9]})
    result = transcode(source)
    encoding = result.metadata["encoding"]
    assert (encoding["video"], encoding["audio"]) == ("copy", "aac")
    assert encoding["reasons"] == [
        "audio cannot be copied: decoding timestamps go back or repeat at packet 11"
    ]
    assert_faithful(source, result)


def test_a_clip_cut_before_its_keyframe_is_encoded_from_its_first_decodable_frame(
    tmp_path: Path,
) -> None:
    source = write_clip(tmp_path / "cut.mkv", "h264", None, frames=36, drop_first=3)
    with av.open(str(source)) as media:
        assert not next(p for p in media.demux(video=0) if p.size).is_keyframe
    result = transcode(source)
    assert result.metadata["encoding"]["reasons"] == [
        "video cannot be copied: the stream does not start with a keyframe"
    ]
    video = video_of(result)
    expected = decode(source)  # what a decoder makes of it: from the next keyframe on
    verify_video(
        video.path, frames=expected.frames, duration=expected.seconds, width=320, height=240
    )
