"""The timestamps a copied stream gets for MP4: every packet kept, in order, or the copy refused.

Packets here are PyAV packets with the timestamps a demuxer gives (the demuxed files are in
test_transcode_containers.py); ``None`` is a timestamp the demuxer did not give.
"""

from __future__ import annotations

from fractions import Fraction

import av
import pytest

from stages.video.remux import CopiedTimestamps, RemuxRefused

# Matroska's millisecond clock at 24 fps: a frame lasts 41 or 42 ticks.
MS = Fraction(1, 1000)


def packet(pts: int | None, dts: int | None, *, key: bool = False, duration: int = 41) -> av.Packet:
    made = av.Packet(b"\0\0\0\1frame")
    made.pts, made.dts, made.duration, made.time_base = pts, dts, duration, MS
    made.is_keyframe = key
    return made


def video(*, reorders: bool = True) -> CopiedTimestamps:
    return CopiedTimestamps(
        "video", rate=Fraction(24), time_base=MS, reorders=reorders, keyframe_first=True
    )


def copy(timing: CopiedTimestamps, packets: list[av.Packet]) -> list[tuple[int, int]]:
    given = [ready for each in packets for ready in timing.add(each)] + timing.end()
    assert len(given) == len(packets)  # every packet kept
    dts = [int(p.dts) for p in given if p.dts is not None]
    assert dts == sorted(set(dts))  # strictly increasing
    assert all(p.pts is not None and p.dts is not None and p.pts >= p.dts for p in given)
    return [(int(p.pts), int(p.dts)) for p in given if p.pts is not None and p.dts is not None]


def test_the_first_packets_of_a_b_frame_stream_get_a_dts_before_the_first_given() -> None:
    # As FFmpeg demuxes H.264 with B-frames from Matroska: the keyframe has no DTS.
    timing = video()
    given = copy(
        timing,
        [packet(0, None, key=True), packet(125, None), packet(42, 0), packet(83, 42)],
    )
    assert given == [(0, -82), (125, -41), (42, 0), (83, 42)]
    assert timing.repaired == 2


def test_a_missing_dts_between_two_is_placed_between_them() -> None:
    given = copy(video(), [packet(0, -42, key=True), packet(83, None), packet(42, 41)])
    assert given == [(0, -42), (83, -1), (42, 41)]


def test_missing_dts_at_the_end_follow_the_last_one_a_frame_apart() -> None:
    given = copy(video(), [packet(0, 0, key=True), packet(83, 41), packet(125, None)])
    assert given[-1] == (125, 82)


def test_a_stream_without_reordering_takes_its_pts_as_dts_and_its_dts_as_pts() -> None:
    timing = CopiedTimestamps(
        "audio", rate=None, time_base=MS, reorders=False, keyframe_first=False
    )
    given = copy(timing, [packet(0, None), packet(21, 21), packet(None, 42), packet(64, None)])
    assert given == [(0, 0), (21, 21), (42, 42), (64, 64)]
    assert timing.repaired == 3


def test_a_long_run_without_dts_is_placed_without_waiting_for_the_end() -> None:
    timing = CopiedTimestamps(
        "audio", rate=None, time_base=MS, reorders=False, keyframe_first=False
    )
    ready = [p for index in range(200) for p in timing.add(packet(index * 21, None))]
    assert len(ready) >= 128  # held in bounded batches, not all until the end
    assert len(ready) + len(timing.end()) == 200


@pytest.mark.parametrize(
    ("packets", "reason"),
    [
        ([packet(0, 0, key=True), packet(42, 42), packet(42, 42)], "go back or repeat at packet 3"),
        ([packet(0, 0, key=True), packet(83, 83), packet(42, 42)], "go back or repeat at packet 3"),
        ([packet(0, 0, key=True), packet(10, 42)], "packet 2 is presented before it is decoded"),
        ([packet(0, 0, key=True), packet(None, 42)], "packet 2 has no presentation timestamp"),
        ([packet(42, 42), packet(0, 83, key=True)], "does not start with a keyframe"),
        # B-frames and no DTS anywhere: nothing says in which order to decode them.
        ([packet(0, None, key=True), packet(83, None), packet(42, None)], "no decoding timestamp"),
    ],
)
def test_what_cannot_be_made_right_is_refused(packets: list[av.Packet], reason: str) -> None:
    timing = video()
    with pytest.raises(RemuxRefused, match=reason) as refused:
        copy(timing, packets)
    assert refused.value.stream == "video"
