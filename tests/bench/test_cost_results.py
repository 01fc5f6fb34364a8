"""python -m bench.cost on a results file: rows read tolerantly, cost rows replaced in place."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.cost import (
    PREFIX,
    WORKER_PHOTO_CPU,
    CostError,
    TaskSize,
    after_bench,
    figures_of,
    main,
    read_results,
)
from bench.images import PHOTO_CPU, PILLOW_CPU
from bench.report import Measurement
from bench.video import VIDEO_CPU, VIDEO_LENGTH

ROWS: list[dict[str, Any]] = [
    {"name": PHOTO_CPU, "value": 0.1, "unit": "CPU s/photo", "spread": [0.09, 0.11]},
    {"name": PILLOW_CPU, "value": 0.25, "unit": "CPU s/photo", "reference": None, "ratio": None},
    {"name": VIDEO_CPU, "value": 16.0, "unit": "CPU s/clip", "rounds": 5},
    {"name": VIDEO_LENGTH, "value": 30, "unit": "s of video"},
]


def _results(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(rows))
    return path


def test_alone_it_adds_its_rows_and_keeps_the_others_as_they_were(tmp_path: Path) -> None:
    path = _results(tmp_path, ROWS)
    assert main(["--results", str(path)]) == 0
    rows = json.loads(path.read_text())
    assert rows[: len(ROWS)] == ROWS  # extra fields (spread, rounds) untouched
    costs = [r for r in rows if r["name"].startswith(PREFIX)]
    assert {r["name"] for r in costs} >= {
        f"{PREFIX}1,000 photos, stage, Fargate on-demand",
        f"{PREFIX}1 h of video, MediaConvert Basic",
    }
    assert main(["--results", str(path)]) == 0  # a rerun replaces, never duplicates
    assert json.loads(path.read_text()) == rows


def test_the_workers_own_cpu_is_read_in_the_milliseconds_its_suite_reports(
    tmp_path: Path,
) -> None:
    worker = {"name": WORKER_PHOTO_CPU, "value": 50.0, "unit": "ms"}
    path = _results(tmp_path, [*ROWS, worker])
    assert figures_of(read_results(path))[WORKER_PHOTO_CPU] == pytest.approx(0.05)
    assert main(["--results", str(path)]) == 0
    names = {r["name"] for r in json.loads(path.read_text())}
    assert f"{PREFIX}1,000 photos, stage + worker, Fargate on-demand" in names


def test_no_write_only_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _results(tmp_path, ROWS)
    assert main(["--results", str(path), "--no-write"]) == 0
    assert json.loads(path.read_text()) == ROWS
    assert "Fargate" in capsys.readouterr().out


def test_a_results_file_it_cannot_read_is_a_clear_error(tmp_path: Path) -> None:
    path = _results(tmp_path, [{"value": 1}])
    with pytest.raises(SystemExit) as exit_:
        main(["--results", str(path)])
    assert exit_.value.code == 2
    with pytest.raises(CostError, match="rows need a name and a value"):
        read_results(path)
    with pytest.raises(CostError, match="not a benchmark results file"):
        read_results(tmp_path / "absent.json")


def test_the_task_size_is_the_templates_default(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(
        "AWSTemplateFormatVersion: '2010-09-09'\n"
        "Parameters:\n"
        "  TaskCpu: {Type: String, Default: '1024'}\n"
        "  TaskMemory: {Type: String, Default: '3072'}\n"
        "Resources:\n"
        "  Queue: {Type: AWS::SQS::Queue}\n"
    )
    assert TaskSize.from_template(template) == TaskSize(vcpu=1, memory_gb=3)
    template.write_text(
        template.read_text().replace("  TaskMemory: {Type: String, Default: '3072'}\n", "")
    )
    with pytest.raises(CostError, match="TaskCpu and TaskMemory"):
        TaskSize.from_template(template)


def test_after_the_suites_it_prices_the_run_into_the_results_file(tmp_path: Path) -> None:
    done = [Measurement(r["name"], float(r["value"]), r["unit"]) for r in ROWS]
    out = tmp_path / "results.json"
    out.write_text(json.dumps([{**r, "reference": None, "ratio": None} for r in ROWS]))
    costs = after_bench(done, out=out)
    names = [r["name"] for r in json.loads(out.read_text())]
    assert [m.name for m in costs] == names[len(ROWS) :]
    assert all(name.startswith(PREFIX) for name in names[len(ROWS) :])


def test_the_worker_suites_tagged_rows_are_found_under_their_plain_name(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    tagged = {"name": f"{WORKER_PHOTO_CPU} [8 jobs, 2 CPU threads]", "value": 40.0, "unit": "ms"}
    path.write_text(json.dumps([tagged]))
    assert figures_of(read_results(path))[WORKER_PHOTO_CPU] == pytest.approx(0.04)
