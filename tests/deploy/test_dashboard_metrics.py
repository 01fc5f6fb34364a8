"""The dashboard and the alert rules read what the worker exports, all of it and nothing else.

Exported: the metric families in prometheus_client's registry once every worker module is
imported, as the samples they write (a counter ``x`` as ``x_total``, a histogram as ``_bucket``,
``_sum`` and ``_count``, an info as ``_info``). Queried: the identifiers matching
``mediamill_[a-z0-9_]+`` or ``process_[a-z0-9_]+`` in every Prometheus expression of the
dashboard (panel targets and variable queries) and of the alert rules; names with a colon are
recording rules, which alerts.yaml must define.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

import stages
import worker
from worker import metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "ecs" / "grafana" / "mediamill.json"
RULES = ROOT / "deploy" / "ecs" / "prometheus" / "alerts.yaml"
COLLECTOR = ROOT / "deploy" / "ecs" / "adot" / "collector.yaml"
METRIC = re.compile(r"\b(?:mediamill|process)_[a-z0-9_]+")
RECORDED = re.compile(r"\bmediamill:[a-z0-9_:]+")
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "info": ("_info",)}
SUFFIXES["histogram"] = ("_bucket", "_sum", "_count")


def exported() -> dict[str, set[str]]:
    """Each family the worker exports, with the sample names it writes."""
    for package in (worker, stages):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if module.name.startswith("worker.dev") or module.name.endswith("__main__"):
                continue  # dev tooling defines no metric; __main__ would run the CLI
            importlib.import_module(module.name)
    families: dict[str, set[str]] = {}
    for family in REGISTRY.collect():
        if family.name.startswith(("mediamill_", "process_")):
            assert family.type in SUFFIXES, f"{family.name}: a {family.type} is not mapped"
            families[family.name] = {family.name + end for end in SUFFIXES[family.type]}
    return families


def panel_queries(dashboard: dict[str, Any]) -> list[str]:
    return [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if target["datasource"]["type"] == "prometheus"
    ]


def variable_queries(dashboard: dict[str, Any]) -> list[str]:
    return [
        variable["query"]["query"]
        for variable in dashboard["templating"]["list"]
        if variable["type"] == "query" and variable["datasource"]["type"] == "prometheus"
    ]


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def names(expressions: list[str]) -> set[str]:
    return {name for expr in expressions for name in METRIC.findall(expr)}


def test_every_exported_metric_has_a_panel() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    shown = names(panel_queries(dashboard))
    families = exported()
    assert any(name.startswith("mediamill_") for name in families)
    missing = sorted(
        family
        for family, samples in families.items()
        if family.startswith("mediamill_") and not samples & shown
    )
    assert missing == [], f"metrics with no panel in {DASHBOARD.name}: {missing}"


def test_every_queried_metric_is_exported() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    samples = set().union(*exported().values())
    for where, expressions in (
        (DASHBOARD.name, panel_queries(dashboard) + variable_queries(dashboard)),
        (RULES.name, rule_expressions()),
    ):
        unknown = sorted(names(expressions) - samples)
        assert unknown == [], f"{where} queries what the worker does not export: {unknown}"


def test_every_recorded_series_read_is_recorded() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    groups = yaml.safe_load(RULES.read_text())["groups"]
    recorded = {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}
    read = {
        name
        for expr in panel_queries(dashboard) + rule_expressions()
        for name in RECORDED.findall(expr)
    }
    assert read
    assert read <= recorded


def label_names(expressions: list[str]) -> set[str]:
    """Label names in matchers and in by/on/without clauses."""
    found: set[str] = set()
    for expr in expressions:
        for matchers in re.findall(r"\{([^{}]*)\}", expr):
            found |= set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
        for grouping in re.findall(r"\b(?:by|on|without)\s*\(([^)]*)\)", expr):
            found |= {name.strip() for name in grouping.split(",") if name.strip()}
    return found


def collector_labels() -> set[str]:
    """What the ADOT sidecar puts on every series: the task ARN's parts, and set attributes."""
    config = yaml.safe_load(COLLECTOR.read_text())
    actions = config["processors"]["resource/task"]["attributes"]
    found: set[str] = set()
    for action in actions:
        if action["action"] == "extract":
            found |= set(re.compile(action["pattern"]).groupindex)
        elif action["action"] in {"insert", "upsert"}:
            found.add(action["key"])
    return found


def test_every_label_queried_is_the_workers_or_the_sidecars() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    worker_labels = set(metrics.build_versions())  # the labels of mediamill_build_info
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            worker_labels |= set(value._labelnames)
    assert {"outcome", "stage", "kind", "operation"} <= worker_labels
    assert {"cluster", "service", "task_id"} <= collector_labels()
    known = worker_labels | collector_labels() | {"le", "job", "instance"}
    expressions = panel_queries(dashboard) + variable_queries(dashboard) + rule_expressions()
    assert sorted(label_names(expressions) - known) == []
