"""bench/prices.json: every price says where it was read, or why it could not be."""

from __future__ import annotations

import copy
import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from bench.prices import PRICE_NAMES, PRICES, CostError, Prices


def _shipped() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(PRICES.read_text())
    return data


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(data))
    return path


def test_the_shipped_prices_load_and_name_their_region_date_and_sources() -> None:
    prices = Prices.load()
    assert prices.region == "us-east-1"
    datetime.date.fromisoformat(prices.read_on)
    assert set(prices.entries) == set(PRICE_NAMES)
    for price in prices.entries.values():
        assert price.source.startswith("https://")
        assert price.note  # read_via, or why it is missing


def test_the_prices_the_table_cannot_do_without_are_there() -> None:
    prices = Prices.load()
    needed = set(PRICE_NAMES) - {
        "fargate_spot_vcpu_hour",
        "mediaconvert_professional_hd_avc_minute",
    }
    assert not needed & set(prices.missing)


@pytest.mark.parametrize("field", ["unit", "what", "source", "value"])
def test_a_price_lacking_a_field_is_refused_by_name(tmp_path: Path, field: str) -> None:
    data = _shipped()
    del data["prices"]["fargate_gb_hour"][field]
    with pytest.raises(CostError, match=f"fargate_gb_hour lacks '{field}'"):
        Prices.load(_write(tmp_path, data))


def test_a_figure_without_where_it_was_read_is_refused(tmp_path: Path) -> None:
    data = _shipped()
    del data["prices"]["lambda_gb_second"]["read_via"]
    with pytest.raises(CostError, match="lambda_gb_second lacks 'read_via'"):
        Prices.load(_write(tmp_path, data))


def test_a_null_price_must_say_why(tmp_path: Path) -> None:
    data = _shipped()
    entry = data["prices"]["mediaconvert_basic_hd_avc_minute"]
    entry["value"] = None
    with pytest.raises(CostError, match="'missing' must say why"):
        Prices.load(_write(tmp_path, data))
    entry["missing"] = "not on the page"
    assert "mediaconvert_basic_hd_avc_minute" in Prices.load(_write(tmp_path, data)).missing


def test_a_price_that_is_not_a_positive_number_is_refused(tmp_path: Path) -> None:
    data = _shipped()
    for bad in ("0.04", 0, -1, True):
        data["prices"]["fargate_vcpu_hour"]["value"] = bad
        with pytest.raises(CostError, match="positive number or null"):
            Prices.load(_write(tmp_path, data))


def test_a_price_left_out_or_unknown_is_refused(tmp_path: Path) -> None:
    data = _shipped()
    gone = copy.deepcopy(data)
    del gone["prices"]["lambda_request"]
    with pytest.raises(CostError, match="lacks lambda_request"):
        Prices.load(_write(tmp_path, gone))
    extra = copy.deepcopy(data)
    extra["prices"]["fargate_arm_vcpu_hour"] = extra["prices"]["fargate_vcpu_hour"]
    with pytest.raises(CostError, match="unknown fargate_arm_vcpu_hour"):
        Prices.load(_write(tmp_path, extra))


@pytest.mark.parametrize("field", ["region", "read_on", "currency"])
def test_the_region_date_and_currency_are_required(tmp_path: Path, field: str) -> None:
    data = _shipped()
    del data[field]
    with pytest.raises(CostError, match=field):
        Prices.load(_write(tmp_path, data))


def test_a_file_that_is_not_json_says_so(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text("{")
    with pytest.raises(CostError, match="cannot read the prices"):
        Prices.load(path)
