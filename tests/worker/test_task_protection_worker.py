"""The real consumer on the moto stack with a stand-in ECS agent: protected while a job runs,
released when it stops, and an agent that fails never stops or slows a job."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from mediamill_core.settings import Settings
from mediamill_testkit.client import Uploader
from mediamill_testkit.ecs_agent import EcsAgent, closed_port_uri
from mediamill_testkit.stages import SleepyStage
from stages.probe.stage import ProbeStage
from worker.consumer import Worker
from worker.dev.devstack import Stack
from worker.dev.samples import write_png
from worker.publish import PublishStage
from worker.registry import LoadedStage, StageRegistry, instantiate

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def agent() -> Iterator[EcsAgent]:
    running = EcsAgent()
    running.start()
    yield running
    running.stop()


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return tmp_path / "sleepy.log"


@pytest.fixture
def settings(settings: Settings, stack: Stack, sqs: Any) -> Settings:
    """The test stack with its queue emptied of the s3:TestEvent that setting up the bucket's
    notification sent: an upload's message is then the only one, and its job the first."""
    got = sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    for message in got.get("Messages", []):
        sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])
    return settings


def sleepy_registry(seconds: float, record: Path) -> StageRegistry:
    options = {"seconds": seconds, "record_to": str(record)}
    return StageRegistry(
        [
            LoadedStage(stage=instantiate(ProbeStage, None, "probe")),
            LoadedStage(stage=instantiate(SleepyStage, options, "sleepy")),
            LoadedStage(stage=instantiate(PublishStage, None, "publish")),
        ]
    )


def recorded(record: Path) -> list[str]:
    return record.read_text().splitlines() if record.exists() else []


def errors(action: str) -> float:
    sample = REGISTRY.get_sample_value("mediamill_task_protection_errors_total", {"action": action})
    return sample or 0.0


async def until(condition: Any, within: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await anyio.sleep(0.01)


async def test_a_job_runs_protected_and_the_worker_lets_go_when_it_stops(
    settings: Settings, agent: EcsAgent, record: Path, tmp_path: Path
) -> None:
    media_id = Uploader(settings).upload(write_png(tmp_path / "a.png", 32, 24))
    worker = Worker(settings, sleepy_registry(1.0, record), burst=True, ecs_agent_uri=agent.uri)
    done_at = None
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        await until(lambda: f"start {media_id} 1" in recorded(record), what="the job")
        await until(agent.requests, within=2, what="protection while the job runs")
        assert f"done {media_id} 1" not in recorded(record)
        assert agent.states() == [True]
        await until(lambda: f"done {media_id} 1" in recorded(record), what="the job's end")
        done_at = time.monotonic()

    enable, release = agent.requests()
    assert enable.body["ExpiresInMinutes"] == 18  # probe 60 s + sleepy 120 s + publish 900 s
    assert release.body == {"ProtectionEnabled": False}
    assert release.at >= done_at - 0.05  # at shutdown, once the job was done
    assert Uploader(settings).get(media_id)["status"] == "READY"


async def test_a_stop_request_drops_protection_while_the_job_drains(
    settings: Settings, agent: EcsAgent, record: Path, tmp_path: Path
) -> None:
    media_id = Uploader(settings).upload(write_png(tmp_path / "a.png", 32, 24))
    worker = Worker(settings, sleepy_registry(2.0, record), ecs_agent_uri=agent.uri)
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        await until(lambda: f"start {media_id} 1" in recorded(record), what="the job")
        await until(agent.requests, within=2, what="protection")
        worker.request_stop()  # what SIGTERM does
        await until(lambda: len(agent.requests()) == 2, within=2, what="the release")
        assert f"done {media_id} 1" not in recorded(record), "released before the job ended"

    assert agent.states() == [True, False]
    assert recorded(record)[-1] == f"done {media_id} 1"  # drained, not cancelled
    assert Uploader(settings).get(media_id)["status"] == "READY"


async def test_an_idle_worker_drops_protection_after_the_idle_delay(
    settings: Settings, agent: EcsAgent, record: Path, tmp_path: Path
) -> None:
    media_id = Uploader(settings).upload(write_png(tmp_path / "a.png", 32, 24))
    quick = settings.model_copy(update={"task_protection_idle_seconds": 0.5})
    worker = Worker(quick, sleepy_registry(0.5, record), ecs_agent_uri=agent.uri)
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        await until(lambda: f"done {media_id} 1" in recorded(record), what="the job")
        done_at = time.monotonic()
        await until(lambda: len(agent.requests()) == 2, within=5, what="the idle release")
        released = agent.requests()[1]
        worker.request_stop()

    assert agent.states() == [True, False]
    assert released.at - done_at > 0.4  # held through the idle delay, then let go
    assert Uploader(settings).get(media_id)["status"] == "READY"


async def test_a_message_whose_delete_is_owed_keeps_the_task_protected(
    settings: Settings, agent: EcsAgent, record: Path, tmp_path: Path
) -> None:
    media_id = Uploader(settings).upload(write_png(tmp_path / "a.png", 32, 24))
    # The job's slot is free once its delete is owed, but a task scaled in before the delete
    # is sent would see the message again: protection is let go only once SQS has answered.
    quick = settings.model_copy(
        update={"task_protection_idle_seconds": 0.2, "delete_linger_seconds": 1.5}
    )
    worker = Worker(quick, sleepy_registry(0.2, record), ecs_agent_uri=agent.uri)
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        await until(lambda: f"done {media_id} 1" in recorded(record), what="the job")
        done_at = time.monotonic()
        await until(lambda: len(agent.requests()) == 2, within=5, what="the idle release")
        released = agent.requests()[1]
        worker.request_stop()

    assert agent.states() == [True, False]
    assert released.at - done_at > 1.5  # the linger, then the idle delay
    assert Uploader(settings).get(media_id)["status"] == "READY"


@pytest.mark.parametrize("answer", ["error", "failure", "hang", "down"])
async def test_a_failing_agent_neither_stops_nor_slows_the_jobs(
    settings: Settings, agent: EcsAgent, record: Path, tmp_path: Path, answer: str
) -> None:
    uploader = Uploader(settings)
    ids = [uploader.upload(write_png(tmp_path / f"{i}.png", 20 + i, 20)) for i in range(3)]
    agent.answer = "ok" if answer == "down" else answer  # type: ignore[assignment]
    uri = closed_port_uri() if answer == "down" else agent.uri
    before = errors("protect")

    with anyio.fail_after(30):
        await Worker(settings, sleepy_registry(0.3, record), burst=True, ecs_agent_uri=uri).run()

    assert [uploader.get(media_id)["status"] for media_id in ids] == ["READY"] * 3
    if answer == "hang":
        # The agent never answered, yet every job finished and the worker exited: no job
        # waits on the agent. (No wall-clock bound: this machine's load is not the product's.)
        assert [r.body.get("ProtectionEnabled") for r in agent.requests()][:1] == [True]
    else:
        assert errors("protect") >= before + 1


async def test_without_an_agent_uri_the_worker_does_nothing_about_protection(
    settings: Settings, agent: EcsAgent, record: Path, tmp_path: Path
) -> None:
    media_id = Uploader(settings).upload(write_png(tmp_path / "a.png", 32, 24))
    log = structlog.get_logger("mediamill.worker.test")
    with capture_logs() as logs:
        await Worker(settings, sleepy_registry(0.1, record), burst=True, log=log).run()

    assert Uploader(settings).get(media_id)["status"] == "READY"
    assert "job_ready" in [entry["event"] for entry in logs]
    assert [e for e in logs if e["event"].startswith("task_protect")] == []
    assert agent.requests() == []
