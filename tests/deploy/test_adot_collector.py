"""The ADOT sidecar's collector config: it scrapes the worker where the worker serves /metrics,
keeps what the dashboard reads, labels each task's series apart, and writes to AMP signed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from mediamill_core.settings import Settings
from worker import metrics
from worker.health import Liveness, status_app

ROOT = Path(__file__).resolve().parents[2]
COLLECTOR = ROOT / "deploy" / "ecs" / "adot" / "collector.yaml"
GUIDE = ROOT / "deploy" / "ecs" / "README.md"
PLACEHOLDERS = {"AMP_REMOTE_WRITE_URL", "AWS_REGION", "MEDIAMILL_ECS_SERVICE"}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COLLECTOR.read_text())
    return loaded


def scrape(config: dict[str, Any]) -> dict[str, Any]:
    [job] = config["receivers"]["prometheus"]["config"]["scrape_configs"]
    assert isinstance(job, dict)
    return job


def test_every_component_in_the_pipeline_is_configured(config: dict[str, Any]) -> None:
    service = config["service"]
    assert set(service["extensions"]) == set(config["extensions"])
    [pipeline] = service["pipelines"].values()
    for kind in ("receivers", "processors", "exporters"):
        assert set(pipeline[kind]) == set(config[kind]), kind
    # The memory limiter sees data first, the batch last (the collector's own advice).
    assert pipeline["processors"][0] == "memory_limiter"
    assert pipeline["processors"][-1] == "batch"


def test_it_scrapes_the_worker_where_it_serves_metrics(config: dict[str, Any]) -> None:
    job = scrape(config)
    [target] = job["static_configs"][0]["targets"]
    assert target == f"localhost:{Settings.model_fields['metrics_port'].default}"
    served = {resource.canonical for resource in status_app(Liveness(1.0)).router.resources()}
    assert job["metrics_path"] in served
    seconds = int(job["scrape_interval"].removesuffix("s"))
    assert 15 <= seconds <= 30
    assert job["job_name"] == "mediamill-worker"  # what MediamillWorkerDown selects


def test_it_keeps_every_series_the_dashboard_reads(config: dict[str, Any]) -> None:
    [keep] = scrape(config)["metric_relabel_configs"]
    assert (keep["action"], keep["source_labels"]) == ("keep", ["__name__"])
    metrics.prepare([], job_slots=1, cpu_slots=1)
    names = {sample.name for family in REGISTRY.collect() for sample in family.samples}
    ours = {name for name in names if name.startswith("mediamill_")}
    assert ours
    # Prometheus anchors relabel regexes at both ends.
    assert all(re.fullmatch(keep["regex"], name) for name in ours)
    assert re.fullmatch(keep["regex"], "process_resident_memory_bytes")
    assert not re.fullmatch(keep["regex"], "python_gc_objects_collected_total")


def test_each_tasks_series_carry_its_cluster_and_task_id(config: dict[str, Any]) -> None:
    actions = config["processors"]["resource/task"]["attributes"]
    [extract] = [a for a in actions if a["action"] == "extract"]
    assert extract["key"] == "aws.ecs.task.arn"
    arn = "arn:aws:ecs:eu-west-1:123456789012:task/media/0123456789abcdef0123456789abcdef"
    found = re.match(extract["pattern"], arn)
    assert found is not None
    assert found.groupdict() == {"cluster": "media", "task_id": "0123456789abcdef0123456789abcdef"}
    china = "arn:aws-cn:ecs:cn-north-1:123456789012:task/media/abc"
    assert re.match(extract["pattern"], china) is not None
    assert config["processors"]["resourcedetection/ecs"]["detectors"] == ["env", "ecs"]
    exporter = config["exporters"]["prometheusremotewrite"]
    assert exporter["resource_to_telemetry_conversion"] == {"enabled": True}


def test_it_writes_to_amp_signed_with_the_task_role(config: dict[str, Any]) -> None:
    exporter = config["exporters"]["prometheusremotewrite"]
    assert exporter["auth"]["authenticator"] == "sigv4auth"
    assert config["extensions"]["sigv4auth"]["service"] == "aps"
    assert exporter["endpoint"] == "${env:AMP_REMOTE_WRITE_URL}"


def test_its_placeholders_are_the_documented_environment(config: dict[str, Any]) -> None:
    text = COLLECTOR.read_text()
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert set(re.findall(r"\$\{env:(\w+)\}", body)) == PLACEHOLDERS
    # Nothing else the collector would try to expand.
    assert re.findall(r"\$(?!\{env:\w+\})", body) == []
    guide = GUIDE.read_text()
    for name in PLACEHOLDERS:
        assert f"`{name}`" in guide, f"{name} is not described in {GUIDE.name}"
