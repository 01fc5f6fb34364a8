"""Suspects run alone: the gate, and the copy that sends a co-received message elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog

from mediamill_core.keys import media_id_from_key, object_tag
from mediamill_core.settings import Settings
from mediamill_testkit.client import Uploader, queue_counts
from mediamill_testkit.faultproxy import FaultProxy
from mediamill_testkit.stages import SleepyStage
from stages.probe.stage import ProbeStage
from worker.aws import open_clients
from worker.claims import Lease, StoredObject
from worker.consumer import Worker
from worker.dev.devstack import Stack
from worker.dev.samples import write_png
from worker.events import parse_message
from worker.publish import PublishStage
from worker.queue import InFlight, MediaQueue
from worker.registry import LoadedStage, StageRegistry, instantiate
from worker.solo import SoloGate
from worker.store import MediaStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_suspect_waits_for_running_jobs_and_holds_back_new_ones() -> None:
    gate = SoloGate()
    log: list[str] = []
    first_running = anyio.Event()

    async def ordinary(name: str, seconds: float, started: anyio.Event | None = None) -> None:
        async with gate.shared():
            log.append(f"{name} start")
            if started is not None:
                started.set()
            await anyio.sleep(seconds)
            log.append(f"{name} end")

    async def suspect() -> None:
        async with gate.alone("suspect"):
            log.append("suspect start")
            await anyio.sleep(0.2)
            log.append("suspect end")

    async with anyio.create_task_group() as group:
        group.start_soon(ordinary, "a", 0.3, first_running)
        await first_running.wait()
        group.start_soon(suspect)
        await anyio.sleep(0.05)
        assert gate.active  # the receive loop takes nothing new from here on
        group.start_soon(ordinary, "b", 0.0)
    assert log == ["a start", "a end", "suspect start", "suspect end", "b start", "b end"]
    assert not gate.active


async def test_ordinary_jobs_run_side_by_side() -> None:
    gate = SoloGate()
    inside = 0
    peak = 0

    async def job() -> None:
        nonlocal inside, peak
        async with gate.shared():
            inside += 1
            peak = max(peak, inside)
            await anyio.sleep(0.1)
            inside -= 1

    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(job)
    assert peak == 3


async def test_a_requeued_message_comes_back_as_a_copy_with_no_try_spent(
    settings: Settings, stack: Stack, sqs: Any
) -> None:
    sqs.purge_queue(QueueUrl=stack.queue_url)
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody='{"Records": []}')
    for _ in range(2):  # two tries spent already
        got = sqs.receive_message(
            QueueUrl=stack.queue_url, AttributeNames=["ApproximateReceiveCount"], WaitTimeSeconds=1
        )
        [message] = got["Messages"]
        sqs.change_message_visibility(
            QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    got = sqs.receive_message(QueueUrl=stack.queue_url, AttributeNames=["All"], WaitTimeSeconds=1)
    [message] = got["Messages"]
    assert message["Attributes"]["ApproximateReceiveCount"] == "3"
    async with open_clients(settings) as aws:
        queue = MediaQueue(aws.sqs, settings, structlog.get_logger())
        async with anyio.create_task_group() as group:
            group.start_soon(queue.run)
            await queue.requeue(InFlight.from_message(message), structlog.get_logger())
            group.cancel_scope.cancel()
    got = sqs.receive_message(
        QueueUrl=stack.queue_url, AttributeNames=["All"], MaxNumberOfMessages=10, WaitTimeSeconds=1
    )
    [copy] = got["Messages"]
    assert copy["Body"] == message["Body"]
    assert copy["Attributes"]["ApproximateReceiveCount"] == "1"


async def test_a_suspect_waits_until_every_other_message_it_shares_the_worker_with_is_settled() -> (
    None
):
    gate = SoloGate()
    gate.hold("its-own")
    gate.hold("finished")  # its job is out of the pipeline; its delete is still under way
    entered = anyio.Event()

    async def suspect() -> None:
        async with gate.alone("its-own"):
            entered.set()

    async with anyio.create_task_group() as group:
        group.start_soon(suspect)
        await anyio.sleep(0.2)
        assert gate.active  # no new work meanwhile
        assert not entered.is_set()  # a crash now would cost "finished" a try nothing counts
        gate.let_go("finished")
        with anyio.fail_after(1):
            await entered.wait()
    assert not gate.active


async def test_a_suspect_starts_only_once_a_finished_batch_mate_is_deleted(
    settings: Settings, stack: Stack, sqs: Any, tmp_path: Path, aws_endpoint: str
) -> None:
    """The chaos run's story: an upload killing its worker again on each try, as a suspect,
    must not take down a batch-mate whose job is done but whose message is not yet deleted:
    that costs the batch-mate a try, on every try of the suspect, until its message reaches
    the DLQ although its upload is READY."""
    sqs.purge_queue(QueueUrl=stack.queue_url)
    uploader = Uploader(settings)
    innocent = uploader.upload(write_png(tmp_path / "innocent.png", 64, 48))
    suspect = uploader.upload(write_png(tmp_path / "suspect.png", 48, 64))
    got = sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    messages = got["Messages"]
    assert len(messages) == 2
    async with open_clients(settings) as aws:
        store = MediaStore(aws.dynamodb, settings.table, event_lock_seconds=30)
        for message in messages:
            [upload] = parse_message(message["Body"]).uploads
            if media_id_from_key(upload.key) != suspect:
                continue
            # A try that died with its worker: claimed, and its lease left to lapse.
            obj = StoredObject(
                upload.etag,
                upload.size,
                upload.version_id,
                upload.sequencer,
                upload.order,
                object_tag(upload.etag, upload.order, upload.version_id),
            )
            lease = Lease("dead-worker", message["MessageId"], 0.1)
            await store.claim(
                suspect, obj, lease, receive_count=1, uploaded_at=None, current_etag=no_head
            )
    await anyio.sleep(0.2)
    for message in messages:
        sqs.change_message_visibility(
            QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    record = tmp_path / "runs.txt"
    reg = StageRegistry(
        [
            LoadedStage(stage=instantiate(ProbeStage, None, "probe")),
            LoadedStage(stage=instantiate(SleepyStage, {"record_to": str(record)}, "sleepy")),
            LoadedStage(stage=instantiate(PublishStage, None, "publish")),
        ]
    )
    in_flight_when_suspect_started: list[int] = []

    async def watch() -> None:
        """The moment the suspect's stage starts: how many messages are in flight then."""
        for _ in range(3000):
            if f"start {suspect}" in (record.read_text() if record.exists() else ""):
                _, in_flight = await anyio.to_thread.run_sync(queue_counts, sqs, stack.queue_url)
                in_flight_when_suspect_started.append(in_flight)
                return
            await anyio.sleep(0.01)

    with FaultProxy(aws_endpoint) as proxy:
        # The first delete is the innocent's (the suspect's comes after it has run): slow, as
        # AWS's answers sometimes are, so that it is surely under way when the suspect could go.
        proxy.slow("sqs", 1.5, operation="DeleteMessageBatch")
        proxied = settings.model_copy(update={"endpoint_url": proxy.endpoint})
        async with anyio.create_task_group() as group:
            group.start_soon(watch)
            await Worker(proxied, reg, burst=True).run()

    # Only its own message was in flight: the innocent's was deleted (or sent on as a copy).
    assert in_flight_when_suspect_started == [1]
    for media_id in (innocent, suspect):
        assert uploader.get(media_id)["status"] == "READY"
    assert queue_counts(sqs, stack.queue_url) == (0, 0)
    assert dlq_bodies(sqs, stack) == []


async def no_head() -> str | None:
    raise AssertionError("the sequencer orders the objects: S3 need not be asked")


def dlq_bodies(sqs: Any, stack: Stack) -> list[str]:
    got = sqs.receive_message(QueueUrl=stack.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [m["Body"] for m in got.get("Messages", [])]
