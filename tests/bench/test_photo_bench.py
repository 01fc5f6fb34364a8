"""The photo suite's rows, its children's kept renditions, the sharp script and the quality check,
on tiny inputs: no benchmark runs here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.images import PHOTO_CPU, SHARP, PhotoRun, method_run, quality_rows, speed_rows
from bench.report import Measurement
from bench.rounds import LoadWatch
from bench.scaling.inputs import Sizing
from bench.video import VIDEO_CORES, VIDEO_CPU
from worker.dev.samples import write_jpeg

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = SHARP / "thumbnail.mjs"


def _load() -> LoadWatch:
    load = LoadWatch()
    load.start, load.end = 0.5, 0.75
    return load


def _runs() -> dict[str, list[PhotoRun]]:
    # Two rounds; round 2 ran on a busier machine, everyone slower by half.
    def run(seconds: float, cpu: float, rss: float) -> list[PhotoRun]:
        return [PhotoRun(12, seconds, cpu, rss), PhotoRun(12, seconds * 2, cpu * 1.1, rss + 2)]

    return {
        "stage": run(0.5, 1.2, 140.0),
        "pillow": run(1.5, 3.6, 330.0),
        "pyvips-per-size": run(0.8, 1.8, 150.0),
        "sharp": run(0.6, 1.44, 135.0),
    }


def test_speed_rows_compare_every_method_with_pillow_round_by_round() -> None:
    rows = {m.name: m for m in speed_rows(_runs(), threads=2, load=_load())}
    stage = rows["photos 12 MP stage"]
    assert stage.reference == "photos 12 MP pillow"
    assert stage.ratio == pytest.approx(3.0)
    assert (stage.ratio_low, stage.ratio_high) == (pytest.approx(3.0), pytest.approx(3.0))
    assert (stage.low, stage.high, stage.rounds) == (12.0, 24.0, 2)
    assert stage.loadavg == (0.5, 0.75)
    assert rows["photos 12 MP stage vs sharp"].ratio == pytest.approx(1.2)
    assert rows["photos 12 MP sharp"].ratio == pytest.approx(2.5)
    cpu = rows[PHOTO_CPU]  # CPU per photo: lower is better, so Pillow's over ours
    assert cpu.value == pytest.approx((0.1 + 0.11) / 2)
    assert cpu.ratio == pytest.approx(3.0)
    assert rows["photos 12 MP stage peak RSS"].ratio == pytest.approx((330 / 140 + 332 / 142) / 2)
    assert rows["photos 12 MP pillow"].ratio is None


def test_the_sizing_file_takes_the_medians_of_the_rounds() -> None:
    rows = speed_rows(_runs(), threads=2, load=_load())
    video = [Measurement(VIDEO_CPU, 20.0, "CPU s/clip"), Measurement(VIDEO_CORES, 1.8, "cores")]
    fresh = Sizing.load().measured_again([*rows, *video], command="test")
    assert fresh.photo_cpu_seconds == round((0.1 + 0.11) / 2, 4)


def test_quality_rows_judge_each_method_against_pillow_with_the_range_over_the_photos() -> None:
    def figures(ssim: float, preview: float, thumb: float) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, value in (("ssim", ssim), ("preview_bytes", preview), ("thumb_bytes", thumb)):
            out |= {key: value, f"{key}_low": value * 0.9, f"{key}_high": value * 1.1}
        return out

    judged = {
        "pillow": figures(0.970, 160_000, 12_000),
        "stage": figures(0.968, 150_000, 12_000),
        "sharp": figures(0.972, 165_000, 11_000),
        "pyvips-per-size": figures(0.971, 160_000, 12_500),
    }
    rows = {m.name: m for m in quality_rows(judged, load=_load())}
    assert len(rows) == 12
    ssim = rows["photo 1440 preview SSIM stage"]
    assert (ssim.reference, ssim.ratio) == ("photo 1440 preview SSIM pillow", 0.968 / 0.970)
    assert (ssim.low, ssim.high, ssim.rounds) == (0.968 * 0.9, 0.968 * 1.1, None)
    # Fewer bytes is better: Pillow's over ours.
    assert rows["photo 1440 preview bytes stage"].ratio == 160_000 / 150_000
    assert rows["photo 320 WebP bytes sharp"].ratio == 12_000 / 11_000
    assert rows["photo 1440 preview SSIM pillow"].ratio is None


def test_a_python_child_keeps_each_photos_renditions_when_asked(tmp_path: Path) -> None:
    photos, kept = tmp_path / "photos", tmp_path / "kept"
    photos.mkdir()
    write_jpeg(photos / "side.jpg", 1200, 800, orientation=6)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["pillow", str(photos), "1", "1", "--keep", str(kept)]
    done = subprocess.run(
        [sys.executable, "-m", "bench.images", *args], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["photos"] == 1
    assert sorted(p.name for p in kept.iterdir()) == ["side.preview.jpg", "side.thumb.webp"]


def test_an_unknown_method_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown method 'gimp'"):
        method_run("gimp", tmp_path, 1, 1)


needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")


def _sharp(*args: str, threads: str | None = "2") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "UV_THREADPOOL_SIZE"}
    if threads is not None:
        env["UV_THREADPOOL_SIZE"] = threads
    return subprocess.run(["node", str(SCRIPT), *args], env=env, capture_output=True, text=True)


@needs_node
@pytest.mark.parametrize(
    ("args", "threads", "message"),
    [
        (["dir", "1"], "2", "expected 3 arguments, got 2"),
        (["dir", "0", "2"], "2", 'REPEAT must be a whole number of at least 1, not "0"'),
        (["dir", "1", "two"], "2", 'THREADS must be a whole number of at least 1, not "two"'),
        (["dir", "1", "2", "--pipeline", "magic"], "2", "--pipeline must be one of"),
        (["dir", "1", "2", "--keep"], "2", "--keep needs a value"),
        (["dir", "1", "2", "--fast"], "2", "unknown option --fast"),
        (["dir", "1", "2"], None, "UV_THREADPOOL_SIZE must be 2 (THREADS), not unset"),
        (["dir", "1", "2"], "4", "UV_THREADPOOL_SIZE must be 2 (THREADS), not 4"),
    ],
)
def test_the_sharp_script_refuses_bad_arguments_with_a_usage_line(
    args: list[str], threads: str | None, message: str
) -> None:
    done = _sharp(*args, threads=threads)
    assert done.returncode == 2
    assert message in done.stderr
    assert "usage: UV_THREADPOOL_SIZE=THREADS node thumbnail.mjs" in done.stderr
    assert len(done.stderr.splitlines()) == 2  # a sentence and the usage, not a stack trace


@needs_node
@pytest.mark.skipif(
    not (SHARP / "node_modules" / "sharp").is_dir(), reason="sharp not installed (make bench)"
)
@pytest.mark.parametrize("pipeline", ["decode-once", "per-size"])
def test_the_sharp_script_makes_the_same_upright_renditions(tmp_path: Path, pipeline: str) -> None:
    import pyvips

    photos, kept = tmp_path / "photos", tmp_path / "kept"
    photos.mkdir()
    write_jpeg(photos / "side.jpg", 2400, 1600, orientation=6)
    write_jpeg(photos / "flat.jpg", 2400, 1600)
    done = _sharp(str(photos), "2", "2", "--keep", str(kept), "--pipeline", pipeline)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["photos"] == 4
    assert figures["cpu_seconds"] > 0
    sizes = {
        p.name: (
            pyvips.Image.new_from_file(str(p)).width,
            pyvips.Image.new_from_file(str(p)).height,
        )
        for p in kept.iterdir()
    }
    assert sizes == {
        "side.preview.jpg": (960, 1440),  # turned upright by its EXIF orientation
        "side.thumb.webp": (213, 320),
        "flat.preview.jpg": (1440, 960),
        "flat.thumb.webp": (320, 213),
    }
