"""The motion stage on motion photos made as phones make them, sound and damaged."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import av
import pytest

from stages import Job, JobCancelled, MediaKind, StageOptions, StageResult
from stages.motion.extract import VideoUnusable, place
from stages.motion.stage import MotionOptions, MotionStage
from stages.probe.motion import EmbeddedVideo
from stages.probe.stage import ProbeStage
from stages.video.checks import verify_video
from worker.dev import samples
from worker.dev.motion_samples import write_motion_photo


def run(path: Path, workdir: Path, **options: Any) -> StageResult:
    probed = ProbeStage(StageOptions()).run_sync(Job.standalone(path, path.parent))
    workdir.mkdir(exist_ok=True)
    stage = MotionStage(MotionOptions(**options))
    job = Job.standalone(
        path, workdir, kind=MediaKind.IMAGE, metadata=probed.metadata, options=stage.options
    )
    return stage.run_sync(job)


def frames_of(path: Path) -> int:
    with av.open(str(path)) as media:
        return sum(1 for _ in media.decode(video=0))


@pytest.mark.parametrize(
    ("name", "options"),
    [("PXL_MP.jpg", {}), ("MVIMG.jpg", {"form": "micro_video"}), ("PXL_MP.heic", {"heic": True})],
)
def test_the_appended_video_becomes_the_motion_rendition(
    tmp_path: Path, name: str, options: dict[str, Any]
) -> None:
    photo = write_motion_photo(tmp_path / name, 320, 240, seconds=1.5, **options)

    result = run(photo, tmp_path / "work")

    assert result.warnings == []
    [motion] = result.renditions
    assert (motion.name, motion.content_type, motion.checked) == ("motion", "video/mp4", True)
    assert (motion.width, motion.height) == (320, 240)
    assert motion.extra["duration"] == pytest.approx(1.5, abs=0.05)
    assert frames_of(motion.path) == 36  # 1.5 s at 24 fps: every frame of the clip
    facts = result.metadata["motion"]
    assert facts["form"] == options.get("form", "motion_photo")
    assert facts["duration"] == motion.extra["duration"]
    assert (facts["video_codec"], facts["audio_codec"]) == ("h264", "aac")
    assert facts["still_at"] == 0.5  # GCamera's presentation timestamp, in seconds
    # No poster or preview of its own (the photo's are its stills), and the copy is gone.
    assert sorted(p.name for p in (tmp_path / "work").rglob("*") if p.is_file()) == ["video.mp4"]


def test_the_short_side_is_capped_by_the_stage_option(tmp_path: Path) -> None:
    clip = samples.write_video(tmp_path / "clip.mp4", width=640, height=480, seconds=1.0)
    photo = write_motion_photo(tmp_path / "PXL_MP.jpg", 640, 480, video=clip.read_bytes())

    result = run(photo, tmp_path / "work", max_short_side=240)

    [motion] = result.renditions
    assert (motion.width, motion.height) == (320, 240)
    assert result.metadata["motion"]["encoding"]["video"] == "h264"
    checked = verify_video(motion.path, width=320, height=240, duration=1.0)
    assert checked.codec == "h264"


def test_a_clip_recorded_sideways_plays_upright(tmp_path: Path) -> None:
    # Phones store the clip as the sensor reads it, with a rotation for display.
    clip = samples.write_video(tmp_path / "clip.mp4", seconds=1.0, rotation=90)
    photo = write_motion_photo(tmp_path / "PXL_MP.jpg", 240, 320, video=clip.read_bytes())

    [motion] = run(photo, tmp_path / "work").renditions

    assert (motion.width, motion.height) == (240, 320)
    with av.open(str(motion.path)) as media:
        frame = next(media.decode(video=0))
    assert (frame.width, frame.height, frame.rotation) == (240, 320, 0)


def test_a_clip_longer_than_max_seconds_is_left_out_before_it_decodes(tmp_path: Path) -> None:
    photo = write_motion_photo(tmp_path / "PXL_MP.jpg", seconds=2.0)
    warning = left_out(run(photo, tmp_path / "long", max_seconds=1.5))
    assert "it lasts 2.0 s, more than the 1.5 s" in warning
    assert run(photo, tmp_path / "ok", max_seconds=2.5).renditions


def test_a_plain_photo_gets_nothing(tmp_path: Path) -> None:
    result = run(samples.write_jpeg(tmp_path / "plain.jpg", 80, 60), tmp_path / "work")
    assert (result.renditions, result.metadata, result.warnings) == ([], {}, [])


def test_it_trusts_the_probe_and_reads_the_claim_only_when_the_probe_did_not(
    tmp_path: Path,
) -> None:
    photo = write_motion_photo(tmp_path / "PXL_MP.jpg")
    stage = MotionStage(MotionOptions())

    def job(metadata: dict[str, Any], name: str) -> Job:
        (tmp_path / name).mkdir()
        return Job.standalone(photo, tmp_path / name, metadata=metadata, options=stage.options)

    assert stage.run_sync(job({"motion_photo": None}, "said-no")).renditions == []
    # An item probed before motion photos were read, reached by `mediamill reprocess`.
    [motion] = stage.run_sync(job({"kind": "image", "format": "jpeg"}, "older")).renditions
    assert motion.name == "motion"


def left_out(result: StageResult) -> str:
    assert (result.renditions, result.metadata) == ([], {})
    [warning] = result.warnings
    assert warning.startswith("the motion photo's video was left out: ")
    assert warning.endswith("; the still is kept")
    return warning


def test_an_offset_past_the_file_leaves_the_still_with_a_warning(tmp_path: Path) -> None:
    photo = write_motion_photo(tmp_path / "PXL_MP.jpg", offset=10_000_000)
    assert "10000000 bytes before the end" in left_out(run(photo, tmp_path / "work"))
    old = write_motion_photo(tmp_path / "MVIMG.jpg", form="micro_video", offset=10_000_000)
    assert "past the start" in left_out(run(old, tmp_path / "work"))


def test_a_truncated_mp4_leaves_the_still_with_a_warning(tmp_path: Path) -> None:
    # The upload cut inside the video: the XMP's length then reaches back into the JPEG.
    photo = write_motion_photo(tmp_path / "PXL_MP.jpg")
    photo.write_bytes(photo.read_bytes()[:-3000])
    assert "not a video" in left_out(run(photo, tmp_path / "cut"))
    # The camera wrote the MP4 short and said so: its moov box is missing.
    clip = samples.write_video(tmp_path / "clip.mp4", seconds=1.0).read_bytes()
    short = write_motion_photo(tmp_path / "short.jpg", video=clip[: len(clip) // 2])
    assert "truncated MP4 without a moov box" in left_out(run(short, tmp_path / "short"))
    assert not list((tmp_path / "short").rglob("*.*"))  # nothing half made is left


def test_bytes_that_are_no_video_leave_the_still_with_a_warning(tmp_path: Path) -> None:
    png = samples.write_png(tmp_path / "x.png", 40, 40).read_bytes()
    photo = write_motion_photo(tmp_path / "PXL_MP.jpg", video=png)
    assert "are a PNG image, not a video" in left_out(run(photo, tmp_path / "work"))
    noise = write_motion_photo(tmp_path / "noise.jpg", video=bytes(range(256)) * 20)
    assert "not a video (unsupported media type" in left_out(run(noise, tmp_path / "noise"))


def damaged_clip(tmp_path: Path, kept: float) -> bytes:
    """A whole MP4 whose media data is zeroed after its first ``kept`` share."""
    clip = bytearray(
        samples.write_video(tmp_path / "clip.mp4", seconds=2.0, audio=False).read_bytes()
    )
    mdat, moov = clip.index(b"mdat") + 4, clip.index(b"moov") - 4
    start = mdat + round((moov - mdat) * kept)
    clip[start:moov] = bytes(moov - start)
    return bytes(clip)


def test_an_undecodable_video_leaves_the_still_with_a_warning(tmp_path: Path) -> None:
    blank = write_motion_photo(tmp_path / "blank.jpg", video=damaged_clip(tmp_path, 0.0))
    assert "no frame of it decodes" in left_out(run(blank, tmp_path / "blank"))
    # Its first frames decode (the probe passes), the rest is damage the transcode refuses
    # when it decodes (a copy would not look: the clip is scaled down, so it is encoded).
    damaged = write_motion_photo(tmp_path / "damaged.jpg", video=damaged_clip(tmp_path, 0.15))
    result = run(damaged, tmp_path / "damaged", max_short_side=144)
    assert "too corrupt" in left_out(result)
    assert not list((tmp_path / "damaged").rglob("*.*"))


def test_a_claim_inconsistent_with_itself_is_refused() -> None:
    with pytest.raises(VideoUnusable, match="past the end"):
        place(EmbeddedVideo("motion_photo", 100, 500, "video/mp4", None), 1000)
    with pytest.raises(VideoUnusable, match="only 8 bytes"):
        place(EmbeddedVideo("motion_photo", 8, 8, "video/mp4", None), 1000)
    assert place(EmbeddedVideo("micro_video", 400, None, "video/mp4", None), 1000) == (600, 400)


def test_a_cancelled_job_stops_in_the_copy(tmp_path: Path) -> None:
    photo = write_motion_photo(tmp_path / "PXL_MP.jpg")
    probed = ProbeStage(StageOptions()).run_sync(Job.standalone(photo, tmp_path))
    stage = MotionStage(MotionOptions())
    cancelled = threading.Event()
    cancelled.set()
    job = Job.standalone(photo, tmp_path, metadata=probed.metadata, options=stage.options)
    job.cancelled = cancelled
    with pytest.raises(JobCancelled):
        stage.run_sync(job)
    assert not (tmp_path / "motion" / "embedded").exists()


def test_declares_the_contract() -> None:
    assert MotionStage.name == "motion"
    assert MotionStage.kinds == frozenset({MediaKind.IMAGE})
    assert MotionStage.requires == ("probe",)
    assert MotionStage.reads_renditions == frozenset()
    assert MotionStage.cpu_bound
    assert not MotionStage.optional
