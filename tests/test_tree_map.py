"""docs/design.md opens with a map of the tree that matches the folders, a line per package."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("mediamill_core", "stages", "worker", "api_lambda")


def _mapped() -> list[str]:
    text = (ROOT / "docs" / "design.md").read_text()
    section = text.split("## Map of the tree", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([^`]+)/` \|", section, flags=re.MULTILINE)


def _folders() -> set[str]:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    top = {path.split("/")[0] for path in tracked if "/" in path and not path.startswith(".")}
    packages = {
        str(init.parent.relative_to(ROOT))
        for root in PRODUCT
        for init in (ROOT / root).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    return top | packages


def test_the_map_opens_the_design_notes() -> None:
    text = (ROOT / "docs" / "design.md").read_text()
    assert text.split("\n## ", 2)[1].startswith("Map of the tree")


def test_the_map_has_a_line_for_each_folder_and_package_and_no_others() -> None:
    mapped = _mapped()
    assert len(mapped) == len(set(mapped)), "a folder is mapped twice"
    assert set(mapped) == _folders()
