"""The worker as a real process: signals, drain, crash recovery, bad messages, health."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mediamill_core.settings import Settings
from mediamill_testkit.client import Uploader, queue_counts, wait_for_status
from mediamill_testkit.ecs_agent import EcsAgent
from mediamill_testkit.plugin_dist import install_test_stages, pythonpath
from worker.dev.devstack import Stack
from worker.dev.samples import write_png

pytestmark = pytest.mark.timeout(90)


def eventually(condition: Callable[[], Any], within: float, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy (a condition, not a sleep)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {within} s: {what}")


class WorkerProcess:
    """``python -m worker worker`` with its JSON log lines collected from stderr."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "worker", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in list(self.lines):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                found.append(entry)
        return found

    def names(self) -> list[str]:
        return [str(entry.get("event")) for entry in self.events()]

    def wait_for_log(self, event: str, within: float = 20.0) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            if self.proc.poll() is not None and not self._reader.is_alive():
                raise AssertionError(f"worker exited before {event!r}:\n{self.output()}")
            return next((e for e in self.events() if e.get("event") == event), None)

        try:
            entry: dict[str, Any] = eventually(found, within, f"log event {event!r}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.output()}") from None
        return entry

    def wait_exit(self, within: float) -> int:
        try:
            code = self.proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker still running after {within} s:\n{self.output()}"
            ) from None
        self._reader.join(timeout=5)
        return code

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def output(self) -> str:
        return "\n".join(self.lines[-60:])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def record(tmp_path: Path) -> Path:
    """Where the sleepy stage writes 'start <id> <attempt>' and 'done <id> <attempt>'."""
    return tmp_path / "sleepy.log"


@pytest.fixture
def start_worker(
    stack_env: dict[str, str], tmp_path: Path, record: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    site = install_test_stages(tmp_path / "site")
    started: list[WorkerProcess] = []

    def start(*args: str, sleep: float = 0.0, **extra: str) -> WorkerProcess:
        env = {
            **os.environ,
            **stack_env,
            "PYTHONPATH": pythonpath(site),
            "MEDIAMILL_STAGES": "probe,sleepy,publish",
            "MEDIAMILL_STAGE_OPTIONS": json.dumps(
                {"sleepy": {"seconds": sleep, "record_to": str(record)}}
            ),
            **extra,
        }
        worker = WorkerProcess(env, *args)
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.kill()


@pytest.fixture
def png(tmp_path: Path) -> Path:
    return write_png(tmp_path / "picture.png", 64, 48)


def recorded(record: Path) -> list[str]:
    return record.read_text().splitlines() if record.exists() else []


def wait_recorded(record: Path, line: str, within: float = 30.0) -> None:
    eventually(lambda: line in recorded(record), within, f"{line!r} in {record.name}")


# --- SIGTERM -------------------------------------------------------------------------------


def test_sigterm_during_a_job_drains_it_and_exits_0(
    start_worker: Callable[..., WorkerProcess],
    settings: Settings,
    stack: Stack,
    dynamodb: Any,
    sqs: Any,
    png: Path,
    record: Path,
) -> None:
    worker = start_worker(sleep=2.0)
    worker.wait_for_log("worker_started")
    media_id = Uploader(settings).upload(png)
    wait_recorded(record, f"start {media_id} 1")

    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(within=30) == 0, worker.output()

    assert recorded(record) == [f"start {media_id} 1", f"done {media_id} 1"]
    names = worker.names()
    # The signal came mid-job and the job still finished before the worker stopped.
    assert names.index("signal_received") < names.index("job_ready")
    assert "job_released" not in names
    item = wait_for_status(dynamodb, settings.table, media_id, ("READY",), within=1)
    assert item["status"] == "READY"
    assert queue_counts(sqs, stack.queue_url) == (0, 0)


def test_sigterm_past_the_drain_limit_releases_the_job_for_another_worker(
    start_worker: Callable[..., WorkerProcess],
    settings: Settings,
    stack: Stack,
    dynamodb: Any,
    sqs: Any,
    png: Path,
    record: Path,
) -> None:
    first = start_worker(sleep=60.0, MEDIAMILL_DRAIN_SECONDS="1")
    first.wait_for_log("worker_started")
    media_id = Uploader(settings).upload(png)
    wait_recorded(record, f"start {media_id} 1")

    signalled = time.monotonic()
    first.signal(signal.SIGTERM)
    assert first.wait_exit(within=15) == 0, first.output()
    assert time.monotonic() - signalled < 10
    assert "job_released" in first.names()
    # Released with visibility 0: visible again now, not after the 30 s visibility timeout.
    assert queue_counts(sqs, stack.queue_url) == (1, 0)
    assert f"done {media_id} 1" not in recorded(record)

    second = start_worker("--burst", sleep=0.0)
    assert second.wait_exit(within=40) == 0, second.output()
    assert f"done {media_id} 2" in recorded(record)
    wait_for_status(dynamodb, settings.table, media_id, ("READY",), within=1)
    assert queue_counts(sqs, stack.queue_url) == (0, 0)


def test_on_ecs_a_job_is_protected_from_scale_in_until_sigterm(
    start_worker: Callable[..., WorkerProcess],
    settings: Settings,
    dynamodb: Any,
    png: Path,
    record: Path,
) -> None:
    agent = EcsAgent()
    agent.start()
    try:
        worker = start_worker(
            sleep=2.0, ECS_AGENT_URI=agent.uri, MEDIAMILL_TASK_PROTECTION_MINUTES="45"
        )
        worker.wait_for_log("worker_started")
        media_id = Uploader(settings).upload(png)
        wait_recorded(record, f"start {media_id} 1")
        eventually(agent.requests, 5, "a protection request")

        worker.signal(signal.SIGTERM)
        assert worker.wait_exit(within=30) == 0, worker.output()
    finally:
        agent.stop()

    assert [r.body for r in agent.requests()] == [
        {"ProtectionEnabled": True, "ExpiresInMinutes": 45},
        {"ProtectionEnabled": False},
    ]
    names = worker.names()
    assert names.index("signal_received") < names.index("task_protection_released")
    assert names.index("task_protection_released") < names.index("job_ready")
    item = wait_for_status(dynamodb, settings.table, media_id, ("READY",), within=1)
    assert item["status"] == "READY"


# --- a crash -------------------------------------------------------------------------------


def media_events(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Everything on the events queue (SNS envelopes unwrapped), until it is empty."""
    found: list[dict[str, Any]] = []
    while True:
        response = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        messages = response.get("Messages", [])
        if not messages:
            return found
        for message in messages:
            found.append(json.loads(json.loads(message["Body"])["Message"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def test_sigkill_mid_job_is_finished_by_another_worker_once(
    start_worker: Callable[..., WorkerProcess],
    settings: Settings,
    stack: Stack,
    dynamodb: Any,
    sqs: Any,
    sns: Any,
    png: Path,
    record: Path,
) -> None:
    events_url = sqs.create_queue(QueueName=f"{stack.names.prefix}-media-events")["QueueUrl"]
    events_arn = sqs.get_queue_attributes(QueueUrl=events_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=stack.media_topic_arn, Protocol="sqs", Endpoint=events_arn)

    first = start_worker(sleep=60.0, MEDIAMILL_VISIBILITY_TIMEOUT="3")
    first.wait_for_log("worker_started")
    media_id = Uploader(settings).upload(png)
    wait_recorded(record, f"start {media_id} 1")
    first.signal(signal.SIGKILL)
    assert first.wait_exit(within=10) == -signal.SIGKILL

    second = start_worker("--burst", sleep=0.0, MEDIAMILL_VISIBILITY_TIMEOUT="3")
    assert second.wait_exit(within=40) == 0, second.output()

    # The second try is receive 2, or a later one: the message can come back up to a third of
    # the timeout before the dead worker's lease lapses (the visibility and the lease are
    # renewed by loops of their own), and a try that meets a live lease hands the message back
    # until it has lapsed (worker.claims).
    lines = recorded(record)
    assert lines[0] == f"start {media_id} 1", lines
    assert len(lines) == 3, lines
    retry = int(lines[1].rsplit(" ", 1)[1])
    assert retry >= 2, lines
    assert lines[1:] == [f"start {media_id} {retry}", f"done {media_id} {retry}"]
    wait_for_status(dynamodb, settings.table, media_id, ("READY",), within=1)
    assert queue_counts(sqs, stack.queue_url) == (0, 0)
    processed = [
        event
        for event in media_events(sqs, events_url)
        if event["type"] == "media.processed" and event["media_id"] == media_id
    ]
    assert len(processed) == 1


# --- a malformed message -------------------------------------------------------------------


def test_malformed_message_goes_to_the_dlq_and_the_worker_keeps_serving(
    start_worker: Callable[..., WorkerProcess],
    settings: Settings,
    stack: Stack,
    dynamodb: Any,
    sqs: Any,
    png: Path,
) -> None:
    worker = start_worker(
        sleep=0.0, MEDIAMILL_RETRY_BASE_SECONDS="1", MEDIAMILL_RETRY_MAX_SECONDS="1"
    )
    worker.wait_for_log("worker_started")
    garbage = "\x00not json at all {{{"
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody=garbage)
    media_id = Uploader(settings).upload(png)

    wait_for_status(dynamodb, settings.table, media_id, ("READY",), within=30)
    eventually(lambda: queue_counts(sqs, stack.dlq_url)[0] == 1, 40, "garbage in the DLQ")
    assert worker.proc.poll() is None, worker.output()

    [dead] = sqs.receive_message(QueueUrl=stack.dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert dead["Body"] == garbage
    malformed = [e for e in worker.events() if e.get("event") == "malformed_message"]
    assert len(malformed) == stack.max_receive_count
    assert malformed[-1]["last_try"] is True

    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(within=30) == 0, worker.output()
    assert queue_counts(sqs, stack.queue_url) == (0, 0)


# --- health --------------------------------------------------------------------------------


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def mediamill_health(url: str) -> int:
    return subprocess.run(
        [sys.executable, "-m", "worker", "health", "--url", url],
        capture_output=True,
        timeout=30,
        check=False,
    ).returncode


def test_status_server_answers_while_running(
    start_worker: Callable[..., WorkerProcess],
) -> None:
    worker = start_worker()
    status_url = worker.wait_for_log("worker_started")["status_url"]

    status, body = eventually(
        lambda: (answer := http_get(f"{status_url}/healthz"))[0] == 200 and answer,
        10,
        "/healthz to answer 200",
    )
    assert json.loads(body)["status"] == "ok"
    status, metrics = http_get(f"{status_url}/metrics")
    assert status == 200
    assert "mediamill_jobs_total" in metrics
    assert mediamill_health(status_url) == 0

    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(within=30) == 0, worker.output()
    assert mediamill_health(status_url) == 1
