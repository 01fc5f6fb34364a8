"""The bench children report the CPU seconds of the stage alone: the scaling simulation's input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from worker.dev.samples import write_jpeg, write_video

ROOT = Path(__file__).resolve().parents[2]


def _child(*args: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", *args], env=env, capture_output=True, text=True, check=True
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def test_the_photo_child_reports_the_cpu_seconds_of_its_timed_photos(tmp_path: Path) -> None:
    for index in range(2):
        write_jpeg(tmp_path / f"photo-{index}.jpg", 2400, 1600, camera=True)
    figures = _child("bench.images", "stage", str(tmp_path), "2", "1")
    assert figures["photos"] == 4
    # One thread of CPU-bound work: CPU time close to the wall time, and never far above it.
    assert 0.3 * figures["seconds"] < figures["cpu_seconds"] < 2 * figures["seconds"] + 0.05


def test_the_video_child_reports_the_cpu_seconds_of_probe_and_transcode(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mp4", width=640, height=360, seconds=2.0)
    figures = _child("bench.video", "stage", str(clip), str(tmp_path / "out"))
    cores = len(os.sched_getaffinity(0))
    assert 0 < figures["cpu_seconds"] <= cores * figures["seconds"] + 0.05
