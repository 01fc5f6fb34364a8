"""The hls stage on clips encoded here with PyAV, played back segment by segment."""

from __future__ import annotations

import dataclasses
import itertools
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest

from mediamill_core.hls import HLS_CONTENT_TYPE, playlist_uris
from stages import Job, MediaKind, StageOptions
from stages.probe.stage import ProbeStage
from stages.video.policy import VideoFacts
from stages.video.streaming import HlsOptions, HlsStage
from worker.dev.broken_samples import write_broken_video
from worker.dev.samples import write_video

FPS = 25
SEGMENT = 1.5  # 37.5 frames: keyframes on a fixed frame count alone would drift off the grid
SECONDS = 6.5


def ladder(path: Path, **options: Any) -> Any:
    probed = ProbeStage(StageOptions()).run_sync(Job.standalone(path, path.parent))
    chosen = HlsOptions(**{"min_duration": 2.0, "segment_seconds": SEGMENT, **options})
    workdir = path.parent / f"{path.stem}.work"
    workdir.mkdir()
    job = Job.standalone(
        path, workdir, kind=MediaKind.VIDEO, metadata=probed.metadata, options=chosen
    )
    return HlsStage(chosen).run_sync(job)


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """An 854x480 clip, so two rungs: 480p and 360p."""
    folder = tmp_path_factory.mktemp("wide")
    source = write_video(folder / "wide.mp4", width=854, height=480, seconds=SECONDS, fps=FPS)
    return source, ladder(source)


def master_entries(master: Path) -> list[tuple[dict[str, str], str]]:
    lines = master.read_text().splitlines()
    entries = []
    for line, uri in itertools.pairwise(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            attributes = dict(re.findall(r'([A-Z-]+)=("[^"]*"|[^,]*)', line.split(":", 1)[1]))
            entries.append(({k: v.strip('"') for k, v in attributes.items()}, uri))
    return entries


def segments(playlist: Path) -> tuple[Path, list[Path], list[float]]:
    text = playlist.read_text()
    uris = playlist_uris(text)
    durations = [
        float(line[8:].split(",")[0]) for line in text.splitlines() if line.startswith("#EXTINF:")
    ]
    return playlist.parent / uris[0], [playlist.parent / uri for uri in uris[1:]], durations


def first_packet(init: Path, segment: Path, work: Path) -> tuple[float, bool, bool]:
    """The segment on its own (after its init segment): its first video packet's time, whether
    it is a keyframe, and whether it decodes."""
    whole = work / f"{segment.parent.name}-{segment.name}.mp4"
    whole.write_bytes(init.read_bytes() + segment.read_bytes())
    with av.open(str(whole)) as media:
        stream = media.streams.video[0]
        packet = next(p for p in media.demux(stream) if p.size)
        decoded = list(stream.codec_context.decode(packet)) + list(
            stream.codec_context.decode(None)
        )
        return float(packet.pts * stream.time_base), packet.is_keyframe, bool(decoded)


def test_a_video_shorter_than_the_threshold_gets_no_ladder(tmp_path: Path) -> None:
    source = write_video(tmp_path / "short.mp4", seconds=2.0)
    assert ladder(source, min_duration=3.0).renditions == []


def test_the_ladder_is_one_master_playlist_rendition(wide: tuple[Path, Any]) -> None:
    _, result = wide
    (rendition,) = result.renditions
    assert rendition.name == "hls"
    assert rendition.content_type == HLS_CONTENT_TYPE
    assert (rendition.width, rendition.height) == (854, 480)
    assert [v["name"] for v in rendition.extra["variants"]] == ["480p", "360p"]
    assert rendition.checked


def test_every_variant_decodes_whole_at_its_size_and_the_source_duration(
    wide: tuple[Path, Any],
) -> None:
    source, result = wide
    with av.open(str(source)) as media:
        expected = sum(1 for _ in media.decode(video=0))
    master = result.renditions[0].path
    for attributes, uri in master_entries(master):
        with av.open(str(master.parent / uri)) as media:
            frames = list(media.decode(video=0))
            audio = media.streams.audio[0].codec_context.codec.name
        width, height = (int(side) for side in attributes["RESOLUTION"].split("x"))
        assert (frames[0].width, frames[0].height) == (width, height)
        assert abs(len(frames) - expected) <= 2
        span = float(frames[-1].time - frames[0].time) + 1 / FPS
        assert span == pytest.approx(SECONDS, abs=2 / FPS)
        assert audio == "aac"


def test_every_segment_starts_with_a_keyframe_on_the_same_grid_in_every_variant(
    wide: tuple[Path, Any], tmp_path: Path
) -> None:
    _, result = wide
    master = result.renditions[0].path
    starts_by_variant = []
    for _, uri in master_entries(master):
        init, files, durations = segments(master.parent / uri)
        assert len(files) == len(durations) == 5  # 6.5 s in 1.5 s segments
        starts = []
        for segment in files:
            start, keyframe, decodes = first_packet(init, segment, tmp_path)
            assert keyframe, segment
            assert decodes, segment
            starts.append(start)
        starts_by_variant.append(starts)
        # Each segment starts on the first frame at or after its boundary.
        for index, start in enumerate(starts):
            assert 0 <= start - starts[0] - index * SEGMENT < 1 / FPS - 1e-6, (uri, starts)
    assert all(starts == starts_by_variant[0] for starts in starts_by_variant)


def test_master_playlist_attributes_are_measured_from_the_variants(
    wide: tuple[Path, Any],
) -> None:
    _, result = wide
    master = result.renditions[0].path
    text = master.read_text()
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in text
    summaries = {v["playlist"]: v for v in result.renditions[0].extra["variants"]}
    for attributes, uri in master_entries(master):
        init, files, durations = segments(master.parent / uri)
        size = init.stat().st_size + sum(path.stat().st_size for path in files)
        average = 8 * size / sum(durations)
        assert int(attributes["AVERAGE-BANDWIDTH"]) == pytest.approx(average, rel=0.01)
        peak = max(8 * f.stat().st_size / d for f, d in zip(files[:-1], durations, strict=False))
        assert int(attributes["BANDWIDTH"]) == pytest.approx(peak, rel=0.01)
        video, audio = attributes["CODECS"].split(",")
        with av.open(str(master.parent / uri)) as media:
            context = media.streams.video[0].codec_context
            profile = {"High": 0x64, "Main": 0x4D, "Constrained Baseline": 0x42}[context.profile]
            avcc = bytes(context.extradata or b"")
        # The stored avcC record's profile and level bytes, as the muxer wrote them.
        assert avcc[0] == 1
        assert video == f"avc1.{profile:02x}{avcc[2]:02x}{avcc[3]:02x}"
        assert audio == "mp4a.40.2"
        assert float(attributes["FRAME-RATE"]) == pytest.approx(FPS)
        assert summaries[uri]["bandwidth"] == int(attributes["BANDWIDTH"])


def test_a_small_video_is_never_upscaled(tmp_path: Path) -> None:
    source = write_video(tmp_path / "small.mp4", width=320, height=240, seconds=3.0, fps=FPS)
    (rendition,) = ladder(source).renditions
    entries = master_entries(rendition.path)
    assert [attributes["RESOLUTION"] for attributes, _ in entries] == ["320x240"]


def test_a_sideways_phone_clip_streams_upright(tmp_path: Path) -> None:
    source = write_video(
        tmp_path / "phone.mp4", width=640, height=360, rotation=90, seconds=3.0, fps=FPS
    )
    (rendition,) = ladder(source).renditions
    for attributes, uri in master_entries(rendition.path):
        with av.open(str(rendition.path.parent / uri)) as media:
            frame = next(media.decode(video=0))
        assert attributes["RESOLUTION"] == f"{frame.width}x{frame.height}"
        assert frame.height > frame.width


def test_damaged_packets_are_skipped_with_a_warning(tmp_path: Path) -> None:
    source = write_broken_video(tmp_path / "damaged.mp4", "damaged")
    result = ladder(source)
    (rendition,) = result.renditions
    assert rendition.extra["variants"]
    assert any("video packets were corrupt" in warning for warning in result.warnings)


def facts(width: int, height: int, rotation: int = 0) -> VideoFacts:
    return VideoFacts(
        video_index=0, audio_index=None, video_codec="h264", profile="High",
        pixel_format="yuv420p", bit_depth=8, width=width, height=height, rotation=rotation,
        rate=Fraction(30), reorders=True, duration=120.0, bitrate=None, signal=None,
        audio_codec=None, audio_channels=None, audio_sample_rate=None, created_at=None,
        location=None, demuxer="mov,mp4,m4a,3gp,3g2,mj2",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("size", "names"),
    [
        ((3840, 2160), ["1080p", "720p", "480p", "360p"]),
        ((1920, 1080), ["1080p", "720p", "480p", "360p"]),
        ((1280, 720), ["720p", "480p", "360p"]),
        ((960, 540), ["540p", "480p", "360p"]),
        ((320, 240), ["240p"]),
    ],
)
def test_rungs_are_the_source_size_and_below_never_above(
    size: tuple[int, int], names: list[str]
) -> None:
    from stages.video.ladder import rungs_for

    rungs = rungs_for(facts(*size), short_sides=(1080, 720, 480, 360), max_fps=60, bits_per_pixel=3)
    assert [rung.name for rung in rungs] == names
    assert all(min(r.plan.width, r.plan.height) <= min(size) for r in rungs)
    rotated = rungs_for(
        dataclasses.replace(facts(*size), rotation=90),
        short_sides=(1080, 720, 480, 360),
        max_fps=60,
        bits_per_pixel=3,
    )
    assert [rung.name for rung in rotated] == names


def write_noise_video(path: Path, *, width: int, height: int, seconds: float) -> Path:
    """Random pixels with a tone: nothing compresses, so every rung's encoder meets its cap."""
    import numpy as np

    rng = np.random.default_rng(7)
    with av.open(str(path), mode="w") as output:
        video: Any = output.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": "0", "preset": "ultrafast"}
        audio: Any = output.add_stream("aac", rate=48_000)
        audio.layout = "stereo"
        for index in range(round(seconds * FPS)):
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
        samples = round(seconds * 48_000)
        tone = (0.3 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 48_000)).astype(np.float32)
        for start in range(0, samples, 1024):
            chunk = np.repeat(tone[None, start : start + 1024], 2, axis=0)
            sound = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            sound.sample_rate, sound.pts = 48_000, start
            output.mux(audio.encode(sound))
        output.mux(audio.encode(None))
    return path


def test_the_scratch_the_stage_asks_for_holds_a_ladder_at_its_caps(tmp_path: Path) -> None:
    source = write_noise_video(tmp_path / "noise.mp4", width=480, height=360, seconds=6.0)
    probed = ProbeStage(StageOptions()).run_sync(Job.standalone(source, tmp_path))
    chosen = HlsOptions(min_duration=2.0, segment_seconds=SEGMENT, short_sides=(360, 240))
    workdir = tmp_path / "work"
    workdir.mkdir()
    job = Job.standalone(
        source, workdir, kind=MediaKind.VIDEO, metadata=probed.metadata, options=chosen
    )
    stage = HlsStage(chosen)
    asked = stage.scratch_bytes(job)
    (rendition,) = stage.run_sync(job).renditions
    written = sum(f.stat().st_size for f in workdir.rglob("*") if f.is_file())
    assert {v["name"] for v in rendition.extra["variants"]} == {"360p", "240p"}
    # Noise: both rungs at their caps, so the bound is near what was written, and above it.
    assert 0.8 * asked < written <= asked
    # No ladder below the threshold, so nothing asked for.
    short = HlsOptions(min_duration=60.0)
    assert HlsStage(short).scratch_bytes(dataclasses.replace(job, options=short)) == 0
