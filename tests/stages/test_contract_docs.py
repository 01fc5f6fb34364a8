"""docs/stages.md documents the stage contract; this fails when the two disagree."""

from __future__ import annotations

import re
from pathlib import Path

from stages import Stage

DOC = Path(__file__).resolve().parents[2] / "docs" / "stages.md"


def documented_attributes() -> set[str]:
    text = DOC.read_text()
    section = text.split("## 2. What a stage declares", 1)[1].split("## 3.", 1)[0]
    return set(re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE))


def test_every_declared_stage_attribute_is_documented_and_nothing_else() -> None:
    # Every class-level declaration of the contract is annotated on Stage.
    assert documented_attributes() == set(Stage.__annotations__)


def test_documented_defaults_match_the_code() -> None:
    section = DOC.read_text().split("## 2. What a stage declares", 1)[1].split("## 3.", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", section, flags=re.MULTILINE))
    assert rows["timeout"].strip() == f"`{Stage.timeout}`"
    assert rows["requires"].strip() == f"`{Stage.requires}`"
    for flag in ("optional", "cpu_bound", "final"):
        assert rows[flag].strip() == f"`{getattr(Stage, flag)}`"
