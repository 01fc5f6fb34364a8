"""The Grafana dashboard: the committed JSON is build.py's output, it holds together as Grafana's
model (ids, layout, data sources, variables, metric math), its PromQL parses, and the guide
explains every panel."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "ecs" / "grafana"
DASHBOARD = GRAFANA / "mediamill.json"
RULES = ROOT / "deploy" / "ecs" / "prometheus" / "alerts.yaml"
GUIDE = ROOT / "deploy" / "ecs" / "README.md"
BUILTIN = {"__rate_interval", "__interval", "__range", "__all"}
# Values each variable could take, for parsing the PromQL with promtool.
SAMPLE = {"cluster": "media", "service": "media-worker", "stage": "probe", "kind": "photo|video"}
SAMPLE |= {"__rate_interval": "2m"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def test_the_committed_dashboard_is_what_build_py_writes() -> None:
    built = subprocess.run(
        [sys.executable, str(GRAFANA / "build.py"), "--print"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert built.stdout == DASHBOARD.read_text(), "run `python deploy/ecs/grafana/build.py`"


def test_panels_have_unique_ids_and_tile_the_grid(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] == 39
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0
        assert grid["x"] + grid["w"] <= 24
        # A repeated panel fills its line with copies of itself.
        width = 24 - grid["x"] if "repeat" in panel else grid["w"]
        cells = {(grid["x"] + dx, grid["y"] + dy) for dx in range(width) for dy in range(grid["h"])}
        assert not cells & taken, f"panel {panel['title']!r} overlaps another"
        taken |= cells


def test_every_panel_names_its_source_and_each_query_its_own(dashboard: dict[str, Any]) -> None:
    sources = {
        v["name"]: v["query"] for v in dashboard["templating"]["list"] if v["type"] == "datasource"
    }
    assert sources == {"prometheus": "prometheus", "cloudwatch": "cloudwatch"}
    for panel in panels(dashboard):
        assert panel["type"] in {"timeseries", "heatmap", "table"}
        assert panel["title"]
        assert panel["description"]
        assert panel["targets"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs))
        for target in panel["targets"]:
            kind = target["datasource"]["type"]
            assert target["datasource"]["uid"] == "${" + kind + "}"
            assert target["datasource"] == panel["datasource"], panel["title"]


def test_metric_math_refers_to_queries_of_its_own_panel(dashboard: dict[str, Any]) -> None:
    functions = {"IF", "FILL", "METRICS", "SUM", "MAX", "MIN", "AVG"}
    seen = 0
    for panel in panels(dashboard):
        ids = {target.get("id") for target in panel["targets"]}
        for target in panel["targets"]:
            if target.get("metricEditorMode") == 1:
                seen += 1
                without_variables = re.sub(r"\$\w+", "", target["expression"])
                used = set(re.findall(r"\b[A-Za-z_]\w*\b", without_variables)) - functions
                assert used <= ids, f"{panel['title']}: {target['expression']}"
    assert seen >= 3  # backlog per task, its target, the latency goal


def test_every_variable_used_is_declared(dashboard: dict[str, Any]) -> None:
    declared = {variable["name"] for variable in dashboard["templating"]["list"]}
    text = json.dumps(dashboard)
    used = set(re.findall(r"\$\{?(\w+)", text))
    assert used - BUILTIN <= declared
    assert declared <= used  # and none is declared for nothing


def test_the_latency_goal_is_the_alert_rules_goal(dashboard: dict[str, Any]) -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    [goal] = [
        rule["expr"]
        for group in groups
        for rule in group["rules"]
        if rule.get("record") == "mediamill:upload_to_done_goal_seconds"
    ]
    [variable] = [v for v in dashboard["templating"]["list"] if v["name"] == "latency_goal"]
    assert goal == f"vector({variable['query']})"


def test_the_promql_parses(dashboard: dict[str, Any], tmp_path: Path) -> None:
    expressions = [
        target["expr"]
        for panel in panels(dashboard)
        for target in panel["targets"]
        if target["datasource"]["type"] == "prometheus"
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            inner = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"])
            assert inner is not None
            expressions.append(inner.group(1))

    def substitute(expr: str) -> str:
        return re.sub(r"\$(\w+)", lambda m: SAMPLE[m.group(1)], expr)

    rules = [
        {"record": f"panel:query_{n}:check", "expr": substitute(e)}
        for n, e in enumerate(expressions)
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is not on PATH: `make tools` installs Debian's prometheus package")
    checked = subprocess.run(
        [tool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_guide_explains_every_panel(dashboard: dict[str, Any]) -> None:
    guide = GUIDE.read_text()
    section = guide.split("## Read the dashboard", 1)[1].split("\n## ", 1)[0]
    explained = set(re.findall(r"^- \*\*(.+?)\*\*", section, flags=re.MULTILINE))
    titles = {panel["title"] for panel in panels(dashboard)}
    assert explained == titles


def test_the_dashboard_defaults_are_the_templates(dashboard: dict[str, Any], template: Any) -> None:
    # An operator who imports the dashboard for a stack deployed with the defaults changes nothing.
    variables = {v["name"]: v["query"] for v in dashboard["templating"]["list"]}
    parameters = {name: p.get("Default") for name, p in template.parameters.items()}
    assert variables["backlog_target"] == str(parameters["BacklogPerTaskTarget"])
    assert variables["latency_goal"] == str(parameters["LatencyGoalSeconds"])
