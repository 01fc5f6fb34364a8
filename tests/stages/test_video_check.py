"""verify_video on real files: good ones pass with what they hold; broken ones fail, saying why."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import av
import pytest

from stages import RenditionInvalid
from stages.video.checks import Tolerance, verify_video
from worker.dev import samples


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 frames (2 s at 24 fps), one keyframe: x264's ultrafast keeps its default interval."""
    return samples.write_video(tmp_path_factory.mktemp("check") / "good.mp4", seconds=2.0)


def test_a_good_video_passes_and_says_what_it_holds(clip: Path) -> None:
    checked = verify_video(clip, duration=2.0, frames=48, width=320, height=240)
    assert (checked.width, checked.height, checked.codec) == (320, 240, "h264")
    assert checked.frames == 48
    assert checked.duration == pytest.approx(2.0, abs=1e-3)
    assert verify_video(clip) == checked  # no claims: measured only


@pytest.mark.parametrize(("frames", "passes"), [(46, True), (50, True), (45, False), (51, False)])
def test_the_frame_count_may_miss_by_two_frames(clip: Path, frames: int, passes: bool) -> None:
    if passes:
        verify_video(clip, frames=frames)
    else:
        with pytest.raises(RenditionInvalid, match=f"has 48 video frames, expected {frames}"):
            verify_video(clip, frames=frames)


@pytest.mark.parametrize(("seconds", "passes"), [(1.92, True), (2.08, True), (1.9, False)])
def test_the_duration_may_miss_by_two_frame_periods(
    clip: Path, seconds: float, passes: bool
) -> None:
    if passes:
        verify_video(clip, duration=seconds)
    else:
        with pytest.raises(RenditionInvalid, match=r"lasts 2\.000 s, expected 1\.900 s"):
            verify_video(clip, duration=seconds)


def test_long_videos_may_miss_by_one_per_cent() -> None:
    tolerance = Tolerance()
    assert tolerance.frames_allowed(100) == 2
    assert tolerance.frames_allowed(1800) == 18
    assert tolerance.seconds_allowed(1.0, 1 / 30) == pytest.approx(2 / 30)
    assert tolerance.seconds_allowed(600.0, 1 / 30) == pytest.approx(6.0)


def test_a_video_of_another_size_than_claimed_fails(clip: Path) -> None:
    with pytest.raises(RenditionInvalid, match=r"good\.mp4 is 320x240, not 640x480"):
        verify_video(clip, width=640, height=480)


def rewrite(source: Path, path: Path, change: Callable[[int, av.Packet], av.Packet | None]) -> Path:
    """``source``'s video packets muxed again into ``path``, each through ``change``.

    Matroska keeps each packet's keyframe flag as given (the MP4 muxer reads H.264 itself).
    """
    with av.open(str(source)) as media, av.open(str(path), "w", format="matroska") as output:
        stream = output.add_stream_from_template(media.streams.video[0])
        for index, packet in enumerate(p for p in media.demux(video=0) if p.size):
            changed = change(index, packet)
            if changed is not None:
                changed.stream = stream
                output.mux(changed)
    return path


def test_a_video_that_lost_its_first_keyframe_fails(clip: Path, tmp_path: Path) -> None:
    # What the remux used to make of a Matroska file with B-frames: the keyframe dropped.
    headless = rewrite(clip, tmp_path / "headless.mkv", lambda i, p: None if i == 0 else p)
    with pytest.raises(RenditionInvalid, match="does not start with a keyframe"):
        verify_video(headless)


def blank_idr_slices(packet: av.Packet) -> av.Packet:
    """``packet`` (H.264 in MP4's length-prefixed form) with its IDR slices' bits zeroed.

    The NAL headers stay, so the parser still calls it a keyframe; no decoder makes a frame of it.
    """
    data, offset = bytearray(bytes(packet)), 0
    while offset + 4 < len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        nal = offset + 4
        if data[nal] & 0x1F == 5:  # an IDR slice
            data[nal + 1 : nal + size] = bytes(size - 1)
        offset = nal + size
    packet.update(bytes(data))
    return packet


def test_a_video_whose_first_frame_does_not_decode_fails(clip: Path, tmp_path: Path) -> None:
    broken = rewrite(
        clip, tmp_path / "blank.mkv", lambda i, p: blank_idr_slices(p) if i == 0 else p
    )
    with av.open(str(broken)) as media:
        assert next(media.demux(video=0)).is_keyframe
    with pytest.raises(RenditionInvalid, match="first frame does not decode"):
        verify_video(broken)


def test_a_truncated_video_fails_against_its_claims(clip: Path, tmp_path: Path) -> None:
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(RenditionInvalid):
        verify_video(cut, duration=2.0, width=320, height=240)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: samples.write_audio_only(p, container="mp4"), "has no video stream"),
        (lambda p: p.write_bytes(random.Random(5).randbytes(4096)) and p, "not a readable video"),
        (lambda p: p.write_bytes(b"") and p, "is not a readable video"),
    ],
)
def test_what_is_no_video_fails(tmp_path: Path, make: Callable[[Path], Path], reason: str) -> None:
    path = tmp_path / "not-a-video.mp4"
    make(path)
    with pytest.raises(RenditionInvalid, match=reason):
        verify_video(path)


def test_a_missing_file_fails(tmp_path: Path) -> None:
    with pytest.raises(RenditionInvalid, match="is not a readable video"):
        verify_video(tmp_path / "gone.mp4")
