"""The optional ADOT collector: the repo's collector config, scraping this task's worker."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COLLECTOR_CONFIG = ROOT / "deploy" / "ecs" / "adot" / "collector.yaml"
_ENV = re.compile(r"\$\{env:([A-Z0-9_]+)\}")


def _collector(template: Any) -> dict[str, Any]:
    (entry,) = [
        entry
        for entry in template.properties("WorkerTaskDefinition")["ContainerDefinitions"]
        if "Fn::If" in entry
    ]
    condition, collector, otherwise = entry["Fn::If"]
    assert condition == "ManagedPrometheus"
    assert otherwise == {"Ref": "AWS::NoValue"}  # no workspace, no collector
    return collector


def _environment(template: Any) -> dict[str, Any]:
    return {item["Name"]: item["Value"] for item in _collector(template)["Environment"]}


def _config_text(template: Any) -> str:
    text = _environment(template)["AOT_CONFIG_CONTENT"]
    assert isinstance(text, str), "the config is passed as it is, with no CloudFormation Sub"
    return text


def test_the_collector_is_pinned_bounded_and_never_stops_the_task(template: Any) -> None:
    collector = _collector(template)
    image, _, tag = collector["Image"].rpartition(":")
    assert image == "public.ecr.aws/aws-observability/aws-otel-collector"
    assert re.fullmatch(r"v\d+\.\d+\.\d+", tag), "pin a release, not a moving tag"
    assert collector["Essential"] is False
    assert collector["ReadonlyRootFilesystem"] is True
    assert collector["Memory"] <= 512  # the collector's memory_limiter works within it
    assert collector["HealthCheck"]["Command"] == ["CMD", "/healthcheck"]
    assert "health_check" in yaml.safe_load(_config_text(template))["extensions"]


def test_the_config_is_the_repos_collector_config(template: Any) -> None:
    if not COLLECTOR_CONFIG.exists():
        pytest.skip("deploy/ecs/adot/collector.yaml is not in this tree")
    assert yaml.safe_load(_config_text(template)) == yaml.safe_load(COLLECTOR_CONFIG.read_text())


def test_every_variable_the_config_expands_is_set(template: Any) -> None:
    environment = _environment(template)
    wanted = set(_ENV.findall(_config_text(template)))
    assert wanted, "the config expands no variable: the checks below would prove nothing"
    assert wanted <= set(environment)
    assert template.resolve(environment["AMP_REMOTE_WRITE_URL"]) == (
        "<PrometheusWorkspace.PrometheusEndpoint>api/v1/remote_write"
    )
    assert environment["AWS_REGION"] == {"Ref": "AWS::Region"}
    service = template.properties("WorkerService")["ServiceName"]
    assert template.resolve(environment["MEDIAMILL_ECS_SERVICE"]) == template.resolve(service)


def test_it_scrapes_the_workers_metrics_port(template: Any) -> None:
    port = template.resolve(template.environment("worker")["MEDIAMILL_METRICS_PORT"])
    config = yaml.safe_load(_config_text(template))
    (job,) = config["receivers"]["prometheus"]["config"]["scrape_configs"]
    (targets,) = job["static_configs"]
    assert [target.rpartition(":")[2] for target in targets["targets"]] == [port]


def test_each_tasks_series_stay_apart(template: Any) -> None:
    """Every task scrapes its own loopback: the task's ARN, not the target, tells them apart."""
    config = yaml.safe_load(_config_text(template))
    (pipeline,) = config["service"]["pipelines"].values()
    detectors = [name for name in pipeline["processors"] if name.startswith("resourcedetection")]
    assert detectors
    assert "ecs" in config["processors"][detectors[0]]["detectors"]
    extracts = [
        attribute
        for name in pipeline["processors"]
        if name.startswith("resource/")
        for attribute in config["processors"][name]["attributes"]
        if attribute.get("key") == "aws.ecs.task.arn" and attribute["action"] == "extract"
    ]
    assert extracts
    assert "(?P<task_id>" in extracts[0]["pattern"]
    exporter = config["exporters"]["prometheusremotewrite"]
    assert exporter["resource_to_telemetry_conversion"] == {"enabled": True}
    assert exporter["auth"]["authenticator"] == "sigv4auth"
