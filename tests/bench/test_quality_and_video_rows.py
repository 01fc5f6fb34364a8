"""bench.quality's reference and judgement, and the video suite's rows from interleaved rounds."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import pytest

from bench.quality import judge, reference
from bench.report import ChildRun
from bench.rounds import LoadWatch
from bench.video import VIDEO_CORES, VIDEO_CPU, VideoRun, compare, video_rows
from worker.dev.samples import write_jpeg, write_video


def test_the_reference_is_the_photo_upright_at_the_size_asked_for(tmp_path: Path) -> None:
    from PIL import Image

    stored = Image.new("RGB", (1200, 800), "blue")
    stored.paste(Image.new("RGB", (600, 800), "red"))  # the left half as stored
    photo = write_jpeg(tmp_path / "side.jpg", 1200, 800, orientation=6, image=stored)
    ideal = reference(photo, 400, 600)
    assert ideal.shape == (600, 400, 3)  # rows, columns, bands: portrait, as displayed
    # Orientation 6 turns the picture a quarter clockwise: its left half is now on top.
    assert ideal[:250, :, 0].mean() > 200 > ideal[:250, :, 2].mean()
    assert ideal[350:, :, 2].mean() > 200 > ideal[350:, :, 0].mean()


def _previews(tmp_path: Path) -> tuple[list[Path], Path, Path]:
    import pyvips

    photo = write_jpeg(tmp_path / "card.jpg", 1600, 1200)
    good, blurred = tmp_path / "good", tmp_path / "blurred"
    for folder in (good, blurred):
        folder.mkdir()
        pyvips.Image.black(320, 240).webpsave(str(folder / "card.thumb.webp"))
    upright = pyvips.Image.new_from_file(str(photo))
    preview = upright.resize(0.5, kernel="lanczos3")
    preview.jpegsave(str(good / "card.preview.jpg"), Q=95)
    preview.gaussblur(3).jpegsave(str(blurred / "card.preview.jpg"), Q=95)
    return [photo], good, blurred


def test_a_sharp_preview_scores_near_one_and_a_blurred_one_lower(tmp_path: Path) -> None:
    pytest.importorskip("skimage", reason="scikit-image comes with the bench extra")
    photos, good, blurred = _previews(tmp_path)
    sharp, soft = judge(photos, good), judge(photos, blurred)
    assert sharp["ssim"] > 0.95
    assert soft["ssim"] < sharp["ssim"] - 0.02
    assert sharp["preview_bytes"] == (good / "card.preview.jpg").stat().st_size
    assert sharp["ssim_low"] == sharp["ssim"] == sharp["ssim_high"]  # one photo


def test_judging_a_method_that_made_no_rendition_says_which(tmp_path: Path) -> None:
    photo = write_jpeg(tmp_path / "card.jpg", 400, 300)
    (tmp_path / "kept").mkdir()
    with pytest.raises(FileNotFoundError, match=r"card\.preview\.jpg"):
        judge([photo], tmp_path / "kept")


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg command line is missing")
def test_a_comparison_interleaves_the_stage_its_bare_run_and_ffmpeg(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mp4", width=640, height=360, seconds=2.0)
    rows = {m.name: m for m in compare("tiny", clip, tmp_path, rounds=2)}
    assert rows["video tiny stage seconds, no preview_anim (poster kept)"].rounds == 2
    assert rows["video tiny ffmpeg seconds"].rounds == 2
    made = av.open(str(tmp_path / "clip-ffmpeg.mp4"))
    assert (made.streams.video[0].width, made.streams.video[0].height) == (640, 360)


def _run(seconds: float, cpu: float, rss: float, made: tuple[str, ...] = ()) -> VideoRun:
    return VideoRun(ChildRun(seconds + 1.0, rss, "", cpu), seconds, cpu, made)


def _runs() -> dict[str, list[VideoRun]]:
    full, bare = ("poster", "preview_anim", "video"), ("poster", "video")
    return {
        # Round 2 ran on a busier machine: everyone took twice as long.
        "stage": [_run(10.0, 19.0, 250.0, full), _run(20.0, 20.0, 252.0, full)],
        "bare": [_run(9.0, 18.0, 240.0, bare), _run(18.0, 18.5, 241.0, bare)],
        "ffmpeg": [_run(10.0, 18.0, 200.0), _run(20.0, 18.2, 201.0)],
    }


def test_video_rows_put_the_stage_against_ffmpeg_round_by_round() -> None:
    load = LoadWatch()
    load.start, load.end = 1.0, 3.0
    rows = {m.name: m for m in video_rows("video clip", _runs(), VIDEO_CPU, VIDEO_CORES, load=load)}
    stage = rows["video clip stage seconds"]
    assert (stage.value, stage.low, stage.high, stage.rounds) == (15.0, 10.0, 20.0, 2)
    assert (stage.reference, stage.ratio, stage.ratio_low) == ("video clip ffmpeg seconds", 1, 1)
    bare = rows["video clip stage seconds, no preview_anim (poster kept)"]
    assert bare.ratio == pytest.approx(10 / 9)
    assert rows["video clip stage process seconds (with Python start and imports)"].high == 21.0
    cpu = rows[VIDEO_CPU]
    assert cpu.value == 19.5
    assert cpu.reference == "video clip ffmpeg CPU seconds"
    assert cpu.ratio == pytest.approx((18 / 19 + 18.2 / 20) / 2)
    assert rows[VIDEO_CORES].value == pytest.approx((1.9 + 1.0) / 2)
    assert rows["video clip stage peak RSS"].ratio == pytest.approx((200 / 250 + 201 / 252) / 2)
    assert all(m.loadavg == (1.0, 3.0) for m in rows.values())


def test_a_bare_run_that_made_the_animated_preview_is_refused() -> None:
    runs = _runs()
    runs["bare"][1] = runs["stage"][1]
    with pytest.raises(RuntimeError, match="animated preview"):
        video_rows("video clip", runs, VIDEO_CPU, VIDEO_CORES, load=LoadWatch())
