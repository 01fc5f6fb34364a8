"""The optional ADOT collector: scrapes this task's worker, writes to this stack's workspace."""

from __future__ import annotations

import re
from typing import Any

import yaml


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


def _config(template: Any) -> dict[str, Any]:
    (variable,) = _collector(template)["Environment"]
    assert variable["Name"] == "AOT_CONFIG_CONTENT"
    config: dict[str, Any] = yaml.safe_load(template.resolve(variable["Value"]))
    return config


def test_the_collector_is_pinned_and_never_stops_the_task(template: Any) -> None:
    collector = _collector(template)
    image, _, tag = collector["Image"].rpartition(":")
    assert image == "public.ecr.aws/aws-observability/aws-otel-collector"
    assert re.fullmatch(r"v\d+\.\d+\.\d+", tag), "pin a release, not a moving tag"
    assert collector["Essential"] is False
    assert collector["ReadonlyRootFilesystem"] is True


def test_it_scrapes_the_workers_metrics_port(template: Any) -> None:
    port = template.resolve(template.environment("worker")["MEDIAMILL_METRICS_PORT"])
    (job,) = _config(template)["receivers"]["prometheus"]["config"]["scrape_configs"]
    assert job["static_configs"] == [{"targets": [f"127.0.0.1:{port}"]}]


def test_it_writes_to_the_stacks_workspace_with_sigv4(template: Any) -> None:
    config = _config(template)
    exporter = config["exporters"]["prometheusremotewrite"]
    assert exporter["endpoint"] == "<PrometheusWorkspace.PrometheusEndpoint>api/v1/remote_write"
    assert exporter["auth"]["authenticator"] == "sigv4auth"
    assert config["extensions"]["sigv4auth"] == {"region": "eu-west-1", "service": "aps"}
    (pipeline,) = config["service"]["pipelines"].values()
    assert pipeline["receivers"] == ["prometheus"]
    assert pipeline["exporters"] == ["prometheusremotewrite"]
    assert set(pipeline["processors"]) <= set(config["processors"])
    assert config["service"]["extensions"] == ["sigv4auth"]


def test_each_tasks_series_stay_apart(template: Any) -> None:
    """Every task scrapes 127.0.0.1: the task's ARN, not the target, names the instance."""
    config = _config(template)
    assert config["processors"]["resourcedetection"]["detectors"] == ["ecs"]
    (attribute,) = config["processors"]["resource"]["attributes"]
    assert attribute == {
        "key": "service.instance.id",
        "from_attribute": "aws.ecs.task.arn",
        "action": "upsert",
    }
    processors = next(iter(config["service"]["pipelines"].values()))["processors"]
    assert processors.index("resourcedetection") < processors.index("resource")
