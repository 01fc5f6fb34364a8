"""cfn-lint and checkov find nothing, and every suppression says why and is still needed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "ecs" / "template.yaml"
# checkov does not resolve beside the project's pins: `make test` installs it into its own
# virtualenv first (the Makefile's .venv-checkov target).
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
_SKIPS_KEY = re.compile(r"^(\s+)checkov:$", flags=re.MULTILINE)


def _checkov(path: Path) -> dict[str, Any]:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: `make .venv-checkov` installs it")
    answer = subprocess.run(
        [
            str(CHECKOV),
            "-f",
            str(path),
            "--framework",
            "cloudformation",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert answer.stdout, answer.stderr
    report = json.loads(answer.stdout)
    assert report["summary"]["parsing_errors"] == 0, report["summary"]
    assert report["summary"]["resource_count"] > 0, "checkov read no resource"
    results: dict[str, Any] = report["results"]
    return results


def _found(results: dict[str, Any], kind: str) -> set[tuple[str, str]]:
    return {(check["check_id"], check["resource"]) for check in results.get(kind, [])}


@pytest.fixture(scope="module")
def checkov_results() -> dict[str, Any]:
    return _checkov(TEMPLATE)


def test_cfn_lint_finds_nothing() -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    answer = subprocess.run(
        [str(cfn_lint), "--format", "parseable", str(TEMPLATE)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert answer.returncode == 0, answer.stdout + answer.stderr


def test_checkov_finds_nothing(checkov_results: dict[str, Any]) -> None:
    failed = sorted(_found(checkov_results, "failed_checks"))
    assert not failed, f"fix these, or skip them in the resource's Metadata with a reason: {failed}"


def _declared_skips(template: Any) -> set[tuple[str, str]]:
    return {
        (skip["id"], f"{resource['Type']}.{name}")
        for name, resource in template.resources.items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    }


def test_every_checkov_skip_is_still_needed(
    template: Any, checkov_results: dict[str, Any], tmp_path: Path
) -> None:
    """The same template without its skips fails exactly the checks that are skipped."""
    bare = tmp_path / "template.yaml"
    bare.write_text(_SKIPS_KEY.sub(r"\1checkov-skips-removed:", TEMPLATE.read_text()))
    unskipped = _found(_checkov(bare), "failed_checks")
    declared = _declared_skips(template)
    assert declared, "no skips were seen: the comparison below would prove nothing"
    assert _found(checkov_results, "skipped_checks") == declared
    assert declared - unskipped == set(), "skips of checks that pass anyway, or that checkov lacks"
    assert unskipped - declared == set()


def test_every_checkov_skip_carries_a_reason(template: Any) -> None:
    for name, resource in template.resources.items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            reason = str(skip.get("comment", ""))
            assert len(reason.split()) >= 5, f"{name}: checkov skip {skip.get('id')} needs a reason"


def test_every_cfn_lint_ignore_carries_a_reason() -> None:
    """cfn-lint's ignore list has no field for a reason: each entry's line has a comment."""
    lines = TEMPLATE.read_text().splitlines()
    for number, line in enumerate(lines):
        if not line.strip().startswith("ignore_checks:"):
            continue
        indent = len(line) - len(line.lstrip())
        entries = [line] if "[" in line else []
        for following in lines[number + 1 :]:
            if (
                not following.strip().startswith("- ")
                or len(following) - len(following.lstrip()) <= indent
            ):
                break
            entries.append(following)
        for entry in entries:
            assert "#" in entry, f"line {number + 1}: a cfn-lint ignore without a reason"
