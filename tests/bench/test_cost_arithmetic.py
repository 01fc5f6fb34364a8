"""bench.cost's arithmetic on fixed prices and figures: Fargate, Spot, Lambda, MediaConvert."""

from __future__ import annotations

import pytest
from rich.console import Console

from bench.cost import (
    PREFIX,
    WORKER_PHOTO_CPU,
    WORKER_VIDEO_CPU,
    CostError,
    TaskSize,
    fargate,
    lambda_pillow,
    lines,
    measurements,
    mediaconvert,
    print_table,
)
from bench.images import PHOTO_CPU, PILLOW_CPU
from bench.prices import PRICE_NAMES, Price, Prices
from bench.video import VIDEO_CPU, VIDEO_LENGTH

VALUES: dict[str, float | None] = {
    "fargate_vcpu_hour": 0.04,
    "fargate_gb_hour": 0.005,
    "fargate_spot_discount": 0.7,
    "fargate_spot_vcpu_hour": None,
    "lambda_gb_second": 1e-5,
    "lambda_request": 2e-7,
    "lambda_one_vcpu_mb": 1024,
    "mediaconvert_basic_hd_avc_minute": 0.015,
    "mediaconvert_professional_hd_avc_minute": None,
}
TASK = TaskSize(vcpu=2, memory_gb=4)
FIGURES = {PHOTO_CPU: 0.1, PILLOW_CPU: 0.25, VIDEO_CPU: 3.2, VIDEO_LENGTH: 6.0}


def _prices(**changes: float | None) -> Prices:
    values = {**VALUES, **changes}
    entries = {
        name: Price(values[name], "u", f"the {name}", "https://aws.example/", "read here")
        for name in PRICE_NAMES
    }
    return Prices(region="us-east-1", read_on="2026-12-02", currency="USD", entries=entries)


def test_fargate_bills_the_task_for_the_time_the_work_keeps_its_vcpus_busy() -> None:
    # 3,600 CPU s on 2 vCPUs: half a task-hour of 2 * 0.04 + 4 * 0.005 = $0.10.
    assert fargate(3600, TASK, _prices(), utilisation=1.0) == pytest.approx(0.05)
    # At half use the same work holds the task twice as long.
    assert fargate(3600, TASK, _prices(), utilisation=0.5) == pytest.approx(0.10)
    assert fargate(3600, TASK, _prices(), utilisation=1.0, spot=True) == pytest.approx(0.015)


def test_the_task_memory_is_billed_beside_the_vcpus() -> None:
    big = TaskSize(vcpu=2, memory_gb=16)
    assert fargate(3600, big, _prices(), utilisation=1.0) == pytest.approx(0.5 * (0.08 + 0.08))


def test_lambda_bills_whole_milliseconds_at_the_one_vcpu_memory_and_each_request() -> None:
    # 0.1231 s rounds up to 124 ms; 1,024 MB is 1 GB.
    assert lambda_pillow(0.1231, 1000, _prices()) == pytest.approx(1000 * (0.124e-5 + 2e-7))
    assert lambda_pillow(0.25, 1000, _prices()) == pytest.approx(1000 * (0.25e-5 + 2e-7))
    # 1,769 MB is 1.7275 GB of billing.
    assert lambda_pillow(1.0, 1, _prices(lambda_one_vcpu_mb=1769, lambda_request=None)) is None
    assert lambda_pillow(1.0, 1, _prices(lambda_one_vcpu_mb=1769)) == pytest.approx(
        1769 / 1024 * 1e-5 + 2e-7
    )


def test_mediaconvert_bills_output_minutes() -> None:
    assert mediaconvert(3600, _prices()) == pytest.approx(0.9)
    assert mediaconvert(3600, _prices(), tier="professional") is None


def test_a_price_not_found_leaves_that_cost_out_rather_than_guessing() -> None:
    assert fargate(1, TASK, _prices(fargate_gb_hour=None), utilisation=1.0) is None
    assert fargate(1, TASK, _prices(fargate_spot_discount=None), utilisation=1.0) is not None
    assert fargate(1, TASK, _prices(fargate_spot_discount=None), utilisation=1, spot=True) is None


def test_the_lines_price_a_thousand_photos_and_an_hour_of_video_from_the_clip_length() -> None:
    priced, skipped = lines(FIGURES, _prices(), TASK, utilisation=1.0)
    assert skipped == []
    photos, video = priced
    assert (photos.kind, photos.shape, photos.cpu_seconds) == ("1,000 photos", "stage", 100.0)
    assert photos.per_request == pytest.approx(lambda_pillow(0.25, 1000, _prices()))
    # A 6 s clip at 3.2 CPU s: 600 of them in an hour.
    assert video.cpu_seconds == pytest.approx(600 * 3.2)
    assert video.on_demand == pytest.approx(fargate(1920, TASK, _prices(), utilisation=1.0))
    assert video.per_request == pytest.approx(0.9)


def test_the_workers_own_cpu_adds_a_line_when_the_results_have_it() -> None:
    figures = {**FIGURES, WORKER_PHOTO_CPU: 0.05, WORKER_VIDEO_CPU: 0.6}
    priced, _ = lines(figures, _prices(), TASK, utilisation=1.0)
    by_work = {line.work: line.cpu_seconds for line in priced}
    assert by_work["1,000 photos, stage + worker"] == pytest.approx(150)
    # An hour is 600 uploads of the 6 s clip, each paying the worker's own CPU once.
    assert by_work["1 h of video, stage + worker"] == pytest.approx(600 * (3.2 + 0.6))


def test_work_without_its_figures_is_named_as_left_out() -> None:
    priced, skipped = lines({PHOTO_CPU: 0.1}, _prices(), TASK, utilisation=1.0)
    assert priced == []
    assert any(PILLOW_CPU in reason for reason in skipped)
    assert any(VIDEO_LENGTH in reason for reason in skipped)


@pytest.mark.parametrize("utilisation", [0, -0.5, 1.5])
def test_a_utilisation_outside_zero_to_one_is_refused(utilisation: float) -> None:
    with pytest.raises(CostError, match="utilisation"):
        lines(FIGURES, _prices(), TASK, utilisation=utilisation)


def test_the_rows_compare_each_fargate_cost_with_the_per_request_service() -> None:
    figures = {**FIGURES, WORKER_PHOTO_CPU: 0.05}
    priced, _ = lines(figures, _prices(), TASK, utilisation=1.0)
    rows = {m.name: m for m in measurements(priced, _prices())}
    lam = rows[f"{PREFIX}1,000 photos, Lambda (Pillow, 1,024 MB)"]
    on_demand = rows[f"{PREFIX}1,000 photos, stage, Fargate on-demand"]
    assert on_demand.reference == lam.name
    assert on_demand.ratio == pytest.approx(lam.value / on_demand.value)
    spot = rows[f"{PREFIX}1 h of video, stage, Fargate Spot at 70% off"]
    assert spot.reference == f"{PREFIX}1 h of video, MediaConvert Basic"
    assert spot.ratio == pytest.approx(0.9 / spot.value)
    assert all(m.unit == "USD (us-east-1, prices of 2026-12-02)" for m in rows.values())
    assert len(rows) == len(measurements(priced, _prices()))  # one Lambda row, not one a line


def test_the_table_says_which_prices_were_not_found() -> None:
    console = Console(record=True, width=200)
    prices = _prices(mediaconvert_basic_hd_avc_minute=None)
    priced, skipped = lines(FIGURES, prices, TASK, utilisation=1.0)
    print_table(priced, skipped, prices, TASK, utilisation=1.0, console=console)
    text = console.export_text()
    assert "no price" in text
    assert "Price not found, the mediaconvert_basic_hd_avc_minute" in text
    assert "us-east-1" in text
    assert "2026-12-02" in text
