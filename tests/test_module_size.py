"""No product module grows past what reads in one sitting."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("mediamill_core", "stages", "worker", "api_lambda")
MAX_LINES = 400


def test_no_product_module_is_over_400_lines() -> None:
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for root in PRODUCT
        for path in (ROOT / root).rglob("*.py")
    }
    assert sizes
    assert {path: n for path, n in sizes.items() if n > MAX_LINES} == {}


def test_no_module_is_named_for_nothing_in_particular() -> None:
    vague = {"utils.py", "helpers.py", "manager.py", "misc.py", "common.py"}
    assert [p for root in PRODUCT for p in (ROOT / root).rglob("*.py") if p.name in vague] == []
