"""bench.ladder: the ladder's rows from paired rounds, and its child's figures on a tiny clip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.ladder import ladder_rows
from bench.report import python_child, run_child
from bench.rounds import LoadWatch
from worker.dev.samples import write_video


def test_the_ladder_is_compared_with_the_mp4_of_its_own_round() -> None:
    with LoadWatch() as load:
        rows = ladder_rows("video clip", [3.0, 4.0, 5.0], [1.0, 2.0, 1.0], load=load)
    ladder, mp4, cost = rows
    assert (ladder.name, ladder.value, ladder.reference) == (
        "video clip hls ladder CPU seconds",
        4.0,
        "video clip mp4 CPU seconds (ladder rounds)",
    )
    # Round by round (1/3, 1/2, 1/5), not the medians' ratio (2/4).
    assert ladder.ratio == pytest.approx(1 / 3)
    assert (ladder.ratio_low, ladder.ratio_high) == pytest.approx((1 / 5, 1 / 2))
    assert mp4.value == 1.0
    assert (cost.value, cost.low, cost.high) == (3.0, 2.0, 5.0)
    with pytest.raises(ValueError, match="rounds"):
        ladder_rows("video clip", [1.0], [1.0, 2.0], load=load)


def test_the_child_runs_the_hls_stage_and_prints_its_cpu(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mp4", width=640, height=360, seconds=1.0)
    done = run_child(python_child("bench.ladder", "hls", str(clip), str(tmp_path / "out")))
    figures = json.loads(done.stdout)
    assert figures["variants"] == ["360p"]
    assert 0 < figures["cpu_seconds"] <= done.cpu_seconds
