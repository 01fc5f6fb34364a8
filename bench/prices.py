"""bench/prices.json: AWS's published prices the cost table (bench.cost) is computed with.

Each price says where it was read; one that could not be read is null and says why, so nothing
is made up and the table says what it left out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRICES = Path(__file__).with_name("prices.json")

# Every price the file must name; any may be null when it could not be read, with the reason.
PRICE_NAMES = (
    "fargate_vcpu_hour",
    "fargate_gb_hour",
    "fargate_spot_discount",
    "fargate_spot_vcpu_hour",
    "lambda_gb_second",
    "lambda_request",
    "lambda_one_vcpu_mb",
    "mediaconvert_basic_hd_avc_minute",
    "mediaconvert_professional_hd_avc_minute",
)


class CostError(ValueError):
    """The prices file, the template or the results cannot be priced; says why."""


@dataclass(frozen=True, slots=True)
class Price:
    value: float | None
    unit: str
    what: str
    source: str
    note: str  # where it was read, or why it is missing


@dataclass(frozen=True, slots=True)
class Prices:
    """bench/prices.json: AWS's published prices for one region, read on one date."""

    region: str
    read_on: str
    currency: str
    entries: Mapping[str, Price]

    def __getitem__(self, name: str) -> float | None:
        return self.entries[name].value

    @property
    def missing(self) -> list[str]:
        return [name for name, price in self.entries.items() if price.value is None]

    @classmethod
    def load(cls, path: Path = PRICES) -> Prices:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise CostError(f"{path}: cannot read the prices ({error})") from None
        if not isinstance(data, dict):
            raise CostError(f"{path}: not a prices file (no mapping at the top)")
        head = {key: data.get(key) for key in ("region", "read_on", "currency")}
        absent = [key for key, value in head.items() if not isinstance(value, str) or not value]
        if absent:
            raise CostError(f"{path}: {', '.join(absent)} must be given (a non-empty string)")
        entries = data.get("prices")
        if not isinstance(entries, dict):
            raise CostError(f"{path}: 'prices' must map each price's name to its entry")
        unknown = sorted(set(entries) - set(PRICE_NAMES))
        lacking = [name for name in PRICE_NAMES if name not in entries]
        if unknown or lacking:
            parts = [f"lacks {', '.join(lacking)}"] if lacking else []
            parts += [f"has unknown {', '.join(unknown)}"] if unknown else []
            raise CostError(f"{path}: the prices {' and '.join(parts)}")
        return cls(
            region=str(head["region"]),
            read_on=str(head["read_on"]),
            currency=str(head["currency"]),
            entries={name: _price(path, name, entries[name]) for name in PRICE_NAMES},
        )


def _price(path: Path, name: str, entry: Any) -> Price:
    where = f"{path}: price {name}"
    if not isinstance(entry, dict):
        raise CostError(f"{where} must be a mapping")
    for field in ("unit", "what", "source"):
        if not isinstance(entry.get(field), str) or not entry[field]:
            raise CostError(f"{where} lacks '{field}'")
    if "value" not in entry:
        raise CostError(f"{where} lacks 'value' (null, with 'missing', if it cannot be read)")
    value = entry["value"]
    if value is None:
        if not entry.get("missing"):
            raise CostError(f"{where} has no value: 'missing' must say why")
        return Price(None, entry["unit"], entry["what"], entry["source"], str(entry["missing"]))
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise CostError(f"{where}: value must be a positive number or null")
    if not entry.get("read_via"):
        raise CostError(f"{where} lacks 'read_via': where the figure was read")
    return Price(float(value), entry["unit"], entry["what"], entry["source"], entry["read_via"])
