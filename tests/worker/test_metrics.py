"""What the worker exports for operators: slots, versions, spool space, known label values, and
histogram buckets that reach the longest built-in stage."""

from __future__ import annotations

import ast
import json
import os
import platform
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import EntryPoint, version
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import anyio
import av
import pytest
import pyvips
import structlog
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from mediamill_core.items import encode
from mediamill_core.keys import new_media_id, object_tag, original_key
from mediamill_core.settings import SQS_MAX_VISIBILITY, load_settings
from mediamill_testkit.client import Uploader, raw_item
from stages import Job, Stage, StageResult
from stages.probe.stage import ProbeStage
from worker import metrics
from worker.claims import StoredObject
from worker.consumer import Worker
from worker.dev.devstack import Stack
from worker.dev.samples import write_png
from worker.events import sequencer_order
from worker.publish import PublishStage
from worker.registry import LoadedStage, StageRegistry, discover
from worker.spool import NEED_FLOOR, Spool, bytes_needed
from worker.store import owed_shard

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def builtin_registry() -> StageRegistry:
    """The stages this distribution registers, read from its own pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    group = "mediamill.stages"
    points = [EntryPoint(n, v, group) for n, v in project["entry-points"][group].items()]
    return StageRegistry(discover(found=points))


def top_finite_bucket(histogram: object) -> float:
    bounds: list[float] = list(histogram._upper_bounds)  # type: ignore[attr-defined]
    assert bounds[-1] == float("inf")
    return bounds[-2]


# --- buckets ---------------------------------------------------------------------------------


def test_stage_buckets_reach_the_longest_builtin_stage() -> None:
    registry = builtin_registry()
    assert {s.name for s in registry.order} >= {"probe", "thumbnail", "transcode", "publish"}
    longest = max(stage.longest_seconds for stage in registry.order)
    assert longest >= 3 * 3600  # the transcode's timeout: the test reads the real stages
    assert top_finite_bucket(metrics.STAGE_SECONDS) >= longest


def test_latency_buckets_reach_the_longest_a_message_may_be_held() -> None:
    # A job cannot hold its message past SQS's limit (worker.registry.check_timing).
    assert builtin_registry().critical_path_seconds() < SQS_MAX_VISIBILITY
    assert top_finite_bucket(metrics.UPLOAD_TO_DONE) >= SQS_MAX_VISIBILITY


# --- label values ----------------------------------------------------------------------------


def counted_labels() -> dict[str, set[str]]:
    """Each counter's label values the worker's code counts under, found in its source."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "worker").rglob("*.py"):  # its packages too (worker/reprocess/)
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            # A label given through a local name: the strings assigned to it in the function.
            assigned: dict[str, set[str]] = {}
            for node in ast.walk(function):
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                    assigned.setdefault(node.targets[0].id, set()).update(_strings(node.value))
            for node in ast.walk(function):
                if not (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "labels"
                    and isinstance(node.func.value, ast.Attribute)
                ):
                    continue
                values = found.setdefault(node.func.value.attr, set())
                for arg in node.args:
                    values |= _strings(arg)
                    if isinstance(arg, ast.Name):
                        values |= assigned.get(arg.id, set())
    return found


def _strings(node: ast.AST) -> set[str]:
    return {
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def test_every_label_value_the_code_counts_under_is_exported_from_the_start() -> None:
    counted = counted_labels()
    assert counted["JOBS"] == set(metrics.JOB_OUTCOMES)
    assert counted["SQS_ERRORS"] == set(metrics.SQS_OPERATIONS)
    assert counted["DLQ_BOUND"] == set(metrics.DLQ_REASONS)
    assert counted["SWEPT"] == set(metrics.SWEEP_ACTIONS)


def test_the_documented_outcomes_are_the_counted_ones() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text()
    [row] = [
        line for line in operations.splitlines() if line.startswith("| `mediamill_jobs_total`")
    ]
    meaning = row.split("|")[3]
    assert set(re.findall(r"`([a-z_]+)`", meaning)) == set(metrics.JOB_OUTCOMES)


def test_prepare_exports_every_known_label_value_at_zero() -> None:
    # In a fresh interpreter: in this one, other tests have counted events already.
    script = (
        "from prometheus_client import generate_latest\n"
        "from stages.probe.stage import ProbeStage\n"
        "from stages.tagging.stage import TaggingStage\n"
        "from worker import metrics\n"
        "stages = [ProbeStage(ProbeStage.Options()), TaggingStage(TaggingStage.Options())]\n"
        "metrics.prepare(stages, job_slots=4, cpu_slots=2, lanes=['media', 'backfill'])\n"
        "print(generate_latest().decode())\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    shown = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
    ).stdout
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(shown)
        for sample in family.samples
    }
    for lane in ("media", "backfill"):
        for outcome in metrics.JOB_OUTCOMES:
            assert samples[("mediamill_jobs_total", (("lane", lane), ("outcome", outcome)))] == 0
        for name in ("mediamill_sqs_receives_total", "mediamill_sqs_messages_received_total"):
            assert samples[(name, (("lane", lane),))] == 0, name
        assert samples[("mediamill_jobs_in_flight", (("lane", lane),))] == 0
    expected = [("mediamill_sqs_errors_total", "operation", o) for o in metrics.SQS_OPERATIONS]
    expected += [
        ("mediamill_messages_left_for_dlq_total", "reason", r) for r in metrics.DLQ_REASONS
    ]
    expected += [("mediamill_sweep_settled_total", "action", a) for a in metrics.SWEEP_ACTIONS]
    expected += [("mediamill_stuck_stage_threads_total", "stage", "probe")]  # a CPU stage
    expected += [("mediamill_optional_stage_retries_total", "stage", "tagging")]  # optional
    for name, label, value in expected:
        assert samples[(name, ((label, value),))] == 0, (name, value)
    assert ("mediamill_stuck_stage_threads_total", (("stage", "tagging"),)) not in samples
    assert ("mediamill_optional_stage_retries_total", (("stage", "probe"),)) not in samples
    assert samples[("mediamill_job_slots", ())] == 4
    assert not any(name.endswith("_created") for name, _ in samples)


# --- the running worker ----------------------------------------------------------------------


class Gate(Stage):
    """Holds its job until the test opens it, so the test can look at a busy worker."""

    name = "gate"
    version = "1.0.0"
    requires = ("probe",)
    timeout = 30.0
    entered: ClassVar[anyio.Event]
    opened: ClassVar[anyio.Event]

    async def run(self, job: Job) -> StageResult:
        Gate.entered.set()
        await Gate.opened.wait()
        return StageResult()


@asynccontextmanager
async def running(stack_env: dict[str, str], **env: str) -> AsyncIterator[Worker]:
    fields = {k.removeprefix("MEDIAMILL_").lower(): v for k, v in {**stack_env, **env}.items()}
    registry = StageRegistry(
        [LoadedStage(stage=cls(cls.Options())) for cls in (ProbeStage, Gate, PublishStage)]
    )
    worker = Worker(load_settings(**fields), registry)
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        with anyio.fail_after(15):
            await worker.started.wait()
        try:
            yield worker
        finally:
            worker.request_stop()


async def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


async def test_a_busy_worker_exports_its_slots_versions_and_spool(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    Gate.entered, Gate.opened = anyio.Event(), anyio.Event()
    async with running(stack_env, MEDIAMILL_CONCURRENCY="3", MEDIAMILL_CPU_THREADS="2") as worker:
        assert worker.status_url is not None
        settings = worker.settings
        photo = write_png(tmp_path / "photo.png", 64, 64)
        Uploader(settings).upload(photo)
        with anyio.fail_after(20):
            await Gate.entered.wait()
        try:
            busy = await scrape(worker.status_url)
        finally:
            Gate.opened.set()

    assert busy["mediamill_job_slots"][()] == 3
    assert busy["mediamill_cpu_slots"][()] == 2
    # The upload came by the media lane; the backfill lane is there, idle.
    assert busy["mediamill_jobs_in_flight"][(("lane", "media"),)] == 1
    assert busy["mediamill_jobs_in_flight"][(("lane", "backfill"),)] == 0
    [build] = busy["mediamill_build_info"]
    assert dict(build) == {
        "version": version("mediamill"),
        "python": platform.python_version(),
        "libvips": f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}",
        "ffmpeg": av.ffmpeg_version_info,
    }
    assert busy["mediamill_spool_reserved_bytes"][()] == bytes_needed(photo.stat().st_size)
    assert busy["mediamill_spool_used_bytes"][()] >= photo.stat().st_size  # the spooled original
    assert 0 < busy["mediamill_spool_budget_bytes"][()] <= settings.spool_budget_bytes
    assert busy["mediamill_spool_disk_free_bytes"][()] > 0
    # Known label values are exported (at 0 in a fresh process: see the test below).
    outcomes = {dict(labels)["outcome"] for labels in busy["mediamill_jobs_total"]}
    assert outcomes >= set(metrics.JOB_OUTCOMES)
    assert (("stage", "probe"),) in busy["mediamill_stuck_stage_threads_total"]
    # What the job held is given back when it ends.
    assert REGISTRY.get_sample_value("mediamill_spool_reserved_bytes") == 0
    ready = {"outcome": "ready", "lane": "media"}
    assert (REGISTRY.get_sample_value("mediamill_jobs_total", ready) or 0) >= 1


async def test_the_spool_exports_what_it_holds(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 4 * NEED_FLOOR, structlog.get_logger())
    spool.open()
    try:
        assert REGISTRY.get_sample_value("mediamill_spool_budget_bytes") == spool.capacity
        async with spool.reserve(1024, wait_seconds=0):
            assert REGISTRY.get_sample_value("mediamill_spool_reserved_bytes") == NEED_FLOOR
            (spool.job_dir("m1") / "original").write_bytes(b"x" * 100_000)
            used = REGISTRY.get_sample_value("mediamill_spool_used_bytes")
            assert used is not None
            assert used >= 100_000
        assert REGISTRY.get_sample_value("mediamill_spool_reserved_bytes") == 0
    finally:
        spool.close()


async def test_an_upload_that_killed_its_worker_on_every_try_is_counted(
    stack_env: dict[str, str], stack: Stack, sqs: Any, dynamodb: Any
) -> None:
    settings = load_settings(
        **{k.removeprefix("MEDIAMILL_").lower(): v for k, v in stack_env.items()}
    )
    media_id = new_media_id()
    order = sequencer_order("0A")
    obj = StoredObject("etag-1", 100, None, "0A", order, object_tag("etag-1", order))
    # Its last two tries died with their workers; the third died too: its lease lapsed.
    since = "2020-01-01T00:00:00.000Z"
    item = {
        "media_id": media_id,
        "owner": "alice",
        "status": "PROCESSING",
        "created_at": since,
        "source": obj.as_item(),
        "lease": {"token": "dead", "message_id": "m-1", "expires": time.time() - 5},
        "receive_count": 2,
        "attempts": 2,
        "deaths": stack.max_receive_count - 1,
        "rev": 2,
        "owed_shard": owed_shard(media_id),
        "owed_since": since,
    }
    dynamodb.put_item(TableName=settings.table, Item=encode(item))
    record = {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Post",
        "s3": {
            "bucket": {"name": settings.originals_bucket},
            "object": {
                "key": original_key(media_id),
                "size": 100,
                "eTag": "etag-1",
                "sequencer": "0A",
            },
        },
    }
    sqs.purge_queue(QueueUrl=stack.queue_url)
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody=json.dumps({"Records": [record]}))
    before = REGISTRY.get_sample_value("mediamill_uploads_killing_workers_total") or 0.0

    registry = StageRegistry(
        [LoadedStage(stage=cls(cls.Options())) for cls in (ProbeStage, PublishStage)]
    )
    await Worker(settings, registry, burst=True).run()

    assert (raw_item(dynamodb, settings.table, media_id) or {})["status"] == "FAILED"
    assert REGISTRY.get_sample_value("mediamill_uploads_killing_workers_total") == before + 1
