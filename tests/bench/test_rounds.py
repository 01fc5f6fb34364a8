"""bench.rounds: interleaved order, median and range, paired ratios, rows with their spread."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.report import Measurement, child_usage, run_child, table_cells, write_results
from bench.rounds import LoadWatch, Spread, compared, figure, interleaved, run_rounds
from bench.scaling.inputs import results_file


def test_rounds_interleave_every_method_once_a_round_in_order() -> None:
    assert interleaved(["a", "b", "c"], 2) == [
        (0, "a"), (0, "b"), (0, "c"), (1, "a"), (1, "b"), (1, "c"),
    ]  # fmt: skip


def test_rounds_refuse_no_round_and_a_method_named_twice() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        interleaved(["a"], 0)
    with pytest.raises(ValueError, match="named twice"):
        interleaved(["a", "a"], 1)


def test_run_rounds_calls_the_methods_interleaved_and_keeps_each_ones_results() -> None:
    calls: list[str] = []

    def method(name: str) -> object:
        def call() -> str:
            calls.append(name)
            return f"{name}{calls.count(name)}"

        return call

    runs = run_rounds({"stage": method("stage"), "pillow": method("pillow")}, rounds=3)
    assert calls == ["stage", "pillow"] * 3
    assert runs == {
        "stage": ["stage1", "stage2", "stage3"],
        "pillow": ["pillow1", "pillow2", "pillow3"],
    }


def test_the_spread_is_the_median_and_the_range() -> None:
    assert Spread.of([3.0, 1.0, 10.0, 2.0, 4.0]) == Spread(3.0, 1.0, 10.0, 5)
    assert Spread.of([1.0, 2.0, 4.0, 10.0]).median == 3.0
    with pytest.raises(ValueError, match="at least one round"):
        Spread.of([])


def _load() -> LoadWatch:
    load = LoadWatch()
    load.start, load.end = 1.234, 2.5
    return load


def test_a_ratio_is_the_median_of_the_per_round_ratios_oriented_so_above_one_is_better() -> None:
    # Round 2 was slow for everyone: its pair still says 2x, and the median says 2x.
    ours, theirs = [20.0, 10.0, 22.0], [10.0, 5.0, 10.0]
    faster = compared("ours", ours, "photos/s", "theirs", theirs, better="higher", load=_load())
    assert (faster.ratio, faster.ratio_low, faster.ratio_high) == (2.0, 2.0, 2.2)
    assert (faster.value, faster.low, faster.high, faster.rounds) == (20.0, 10.0, 22.0, 3)
    assert faster.loadavg == (1.23, 2.5)
    seconds = compared("ours", [2.0, 4.0], "s", "theirs", [3.0, 4.0], better="lower", load=_load())
    assert (seconds.ratio_low, seconds.ratio_high) == (1.0, 1.5)
    with pytest.raises(ValueError, match="2 rounds against 1"):
        compared("ours", [1.0, 2.0], "s", "theirs", [1.0], better="lower", load=_load())


def test_rows_keep_their_spread_through_the_results_file_and_older_rows_still_read(
    tmp_path: Path,
) -> None:
    rows = [
        figure("pillow", [10.0, 9.0, 11.0], "photos/s", load=_load()),
        compared("stage", [25.0, 20.0, 24.0], "photos/s", "pillow", [10.0, 9.0, 11.0],
                 better="higher", load=_load()),
    ]  # fmt: skip
    path = tmp_path / "results.json"
    write_results(rows, path)
    written = json.loads(path.read_text())
    assert written[1] == {
        "name": "stage",
        "value": 24.0,
        "unit": "photos/s",
        "reference": "pillow",
        "ratio": 20.0 / 9.0,
        "low": 20.0,
        "high": 25.0,
        "rounds": 3,
        "loadavg": [1.23, 2.5],
        "ratio_low": 24.0 / 11.0,
        "ratio_high": 2.5,
    }
    assert results_file(path) == rows
    path.write_text(json.dumps([{"name": "old", "value": 1.0, "unit": "s", "reference": None,
                                 "ratio": None}]))  # fmt: skip
    assert results_file(path) == [Measurement("old", 1.0, "s")]


def test_the_table_shows_the_range_the_rounds_and_the_load_beside_each_figure() -> None:
    row = compared("stage", [25.0, 20.0, 24.0], "photos/s", "pillow", [10.0, 9.0, 11.0],
                   better="higher", load=_load())  # fmt: skip
    assert table_cells(row) == [
        "stage", "24", "20..25", "photos/s", "pillow", "2.222x", "2.182..2.500", "3", "1.23→2.50",
    ]  # fmt: skip
    assert table_cells(Measurement("bare", 1.5, "MB"))[2:] == ["", "MB", "", "", "", "", ""]


def test_a_child_reports_its_peak_rss_and_cpu_seconds_on_stderrs_last_line() -> None:
    assert child_usage("warning: no newline at the endpeak_rss_kib=2048 cpu_seconds=1.25\n") == (
        2048,
        1.25,
    )
    done = run_child(["python3", "-c", "sum(range(3_000_000)); print('done')"])
    assert done.stdout == "done\n"
    assert 5 < done.peak_rss_mb < 200
    assert 0 < done.cpu_seconds <= done.seconds + 0.05
