"""The Prometheus alert rules: promtool accepts them, each fires on the series built to trigger it
and stays silent on healthy ones, and each is written so an operator can act on it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy" / "ecs" / "prometheus"
RULES = RULES_DIR / "alerts.yaml"
RULE_TESTS = RULES_DIR / "alerts.test.yaml"
GUIDE = ROOT / "deploy" / "ecs" / "README.md"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is not on PATH: `make tools` installs Debian's prometheus package")
    return subprocess.run(
        [tool, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=120, check=False
    )


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_accepts_the_rules() -> None:
    checked = promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts()) + 1} rules found" in checked.stdout  # and the goal's record


def test_each_rule_fires_on_its_trigger_and_not_on_healthy_series() -> None:
    tested = promtool("test", "rules", RULE_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_firing_case_and_a_silent_one() -> None:
    cases = [
        check
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for check in test.get("alert_rule_test", [])
    ]
    fires = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    names = {rule["alert"] for rule in alerts()}
    assert fires == names
    assert silent == names


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_alert_says_how_urgent_what_and_where_its_runbook_is() -> None:
    runbooks = anchors(GUIDE.read_text())
    for rule in alerts():
        assert rule["alert"].startswith("Mediamill"), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert "for" in rule, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert path == "deploy/ecs/README.md", rule["alert"]
        assert anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in runbooks, f"{rule['alert']}: no runbook heading in {GUIDE.name}"
