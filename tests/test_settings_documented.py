"""Every setting the code reads is in the README's table, and the table names no other."""

from __future__ import annotations

import re
from pathlib import Path

from mediamill_core.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_table_lists_every_setting_and_only_those() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `MEDIAMILL_")]
    documented = {name for row in rows for name in re.findall(r"`(MEDIAMILL_[A-Z0-9_]+)`", row)}
    read = {f"{ENV_PREFIX}{field.upper()}" for field in Settings.model_fields}
    assert read - documented == set(), "settings missing from the README's table"
    assert documented - read == set(), "the README's table names settings nothing reads"
