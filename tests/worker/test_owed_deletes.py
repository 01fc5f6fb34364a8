"""Owed deletes against moto's server: a finished job frees its slot at once, its delete goes out
in a shared DeleteMessageBatch (ten at once, or after the linger, never late enough for the
receipt to lapse), and a stopping or burst worker sends every one it owes before it ends."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest
import structlog
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from mediamill_core.settings import Settings
from mediamill_testkit.client import queue_counts
from mediamill_testkit.faultproxy import FaultProxy
from stages.probe.stage import ProbeStage
from worker import metrics
from worker.aws import open_clients
from worker.consumer import Worker
from worker.dev.devstack import Stack
from worker.publish import PublishStage
from worker.queue import InFlight, MediaQueue
from worker.registry import LoadedStage, StageRegistry, instantiate

pytestmark = pytest.mark.anyio

# S3's own test message: a job that only acknowledges it, so jobs end as fast as they start.
TEST_EVENT = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def registry() -> StageRegistry:
    return StageRegistry(
        [
            LoadedStage(stage=instantiate(ProbeStage, None, "probe")),
            LoadedStage(stage=instantiate(PublishStage, None, "publish")),
        ]
    )


def send(sqs: Any, stack: Stack, count: int) -> None:
    sqs.purge_queue(QueueUrl=stack.queue_url)  # the test event setting up the bucket sent
    for _ in range(count):
        sqs.send_message(QueueUrl=stack.queue_url, MessageBody=TEST_EVENT)


def delete_calls() -> float:
    return metrics.aws_calls().get("sqs.DeleteMessageBatch", 0.0)


async def until(condition: Any, within: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await anyio.sleep(0.01)


async def test_ten_finished_jobs_share_one_delete_batch(
    settings: Settings, stack: Stack, sqs: Any
) -> None:
    # Two slots: the ten jobs end in five pairs, and a job that waited for its delete made a
    # call per pair. A long linger: the tenth owed delete is what sends the batch.
    paired = settings.model_copy(update={"concurrency": 2, "delete_linger_seconds": 8.0})
    send(sqs, stack, 10)
    before = delete_calls()
    worker = Worker(paired, registry())
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        await until(lambda: worker.jobs_done == 10, what="ten jobs done")
        # Well before the linger: the batch went because it was full. (The call is counted as
        # it is sent, so the queue, not the count, says when it has landed.)
        await until(
            lambda: queue_counts(sqs, stack.queue_url) == (0, 0),
            within=5,
            what="a batch sent, full",
        )
        assert delete_calls() == before + 1
        worker.request_stop()
    assert delete_calls() == before + 1


async def test_a_jobs_slot_frees_before_its_delete_and_a_stop_sends_what_is_owed(
    settings: Settings, stack: Stack, sqs: Any
) -> None:
    one_slot = settings.model_copy(update={"concurrency": 1, "delete_linger_seconds": 8.0})
    send(sqs, stack, 2)
    before = delete_calls()
    worker = Worker(one_slot, registry())
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        # The second job had the one slot while the first one's delete was still owed.
        await until(lambda: worker.jobs_done == 2, what="both jobs done")
        assert delete_calls() == before
        assert queue_counts(sqs, stack.queue_url) == (0, 2)
        worker.request_stop()
    # Stopped long before the linger: the stop sent both, in one call.
    assert queue_counts(sqs, stack.queue_url) == (0, 0)
    assert delete_calls() == before + 1


async def test_a_burst_worker_sends_its_owed_deletes_rather_than_wait_the_linger(
    settings: Settings, stack: Stack, sqs: Any
) -> None:
    lingering = settings.model_copy(update={"delete_linger_seconds": 10.0})
    send(sqs, stack, 3)
    worker = Worker(lingering, registry(), burst=True)
    with anyio.fail_after(8):  # the messages stay in flight on SQS until deleted
        await worker.run()
    assert worker.jobs_done == 3
    assert queue_counts(sqs, stack.queue_url) == (0, 0)


async def test_a_stop_waits_for_an_unanswered_delete_only_as_long_as_ecs_allows(
    settings: Settings, stack: Stack, sqs: Any, aws_endpoint: str
) -> None:
    send(sqs, stack, 1)
    with FaultProxy(aws_endpoint) as proxy:
        proxy.slow("sqs", 12.0, operation="DeleteMessageBatch")
        # Drain and grace add up to 2 s; the owed deletes get at least 5 s whatever is left.
        stopping = settings.model_copy(
            update={
                "endpoint_url": proxy.endpoint,
                "drain_seconds": 1.0,
                "stage_grace_seconds": 1.0,
            }
        )
        worker = Worker(stopping, registry())
        with capture_logs() as logs:
            async with anyio.create_task_group() as group:
                group.start_soon(worker.run)
                await until(lambda: worker.jobs_done == 1, what="the job")
                worker.request_stop()
                stopped_at = time.monotonic()
        took = time.monotonic() - stopped_at
    assert 4.5 < took < 10.0
    [unsent] = [log for log in logs if log["event"] == "owed_deletes_not_sent"]
    assert unsent["owed"] == 1


async def owe_one(settings: Settings, stack: Stack, sqs: Any) -> tuple[InFlight, float, float]:
    """One message received and its delete owed: (it, when owed, when the delete was sent)."""
    send(sqs, stack, 1)
    sent: list[float] = []
    async with open_clients(settings) as aws:
        aws.sqs.meta.events.register(
            "before-call.sqs.DeleteMessageBatch", lambda **_: sent.append(time.monotonic())
        )
        queue = MediaQueue(aws.sqs, settings, structlog.get_logger())
        [flight] = await queue.receive(1, anyio.Event(), wait_seconds=1)
        async with anyio.create_task_group() as group:
            group.start_soon(queue.run)
            owed_at = time.monotonic()
            queue.delete(flight)
            await until(lambda: len(queue.deletes) == 0, within=15, what="the delete answered")
            group.cancel_scope.cancel()
    assert len(sent) == 1
    assert queue_counts(sqs, stack.queue_url) == (0, 0)
    return flight, owed_at, sent[0]


async def test_a_lone_delete_waits_out_the_linger_for_company_and_no_longer(
    settings: Settings, stack: Stack, sqs: Any
) -> None:
    lingering = settings.model_copy(update={"delete_linger_seconds": 0.6})
    _, owed_at, sent_at = await owe_one(lingering, stack, sqs)
    assert 0.55 <= sent_at - owed_at < 2.0


async def test_a_delete_reaches_sqs_while_the_receipt_is_valid_whatever_the_linger(
    settings: Settings, stack: Stack, sqs: Any
) -> None:
    # A settled message is not extended: its receipt lapses a visibility timeout after its
    # last extension (here its receive), so the linger gives way to half of that.
    short = settings.model_copy(update={"visibility_timeout": 2, "delete_linger_seconds": 10.0})
    flight, _, sent_at = await owe_one(short, stack, sqs)
    assert sent_at - flight.extended_at <= 1.0 + 0.2


async def test_a_failed_delete_is_logged_counted_and_lets_its_message_go(
    settings: Settings, stack: Stack, sqs: Any
) -> None:
    send(sqs, stack, 1)
    errors = REGISTRY.get_sample_value("mediamill_sqs_errors_total", {"operation": "delete"})
    async with open_clients(settings) as aws:
        queue = MediaQueue(aws.sqs, settings, structlog.get_logger())
        [flight] = await queue.receive(1, anyio.Event(), wait_seconds=1)
        flight.receipt = "not-a-receipt-handle"
        let_go: list[str] = []
        with capture_logs() as logs:
            queue.delete(flight)
            queue.deletes.when_deleted(flight, lambda: let_go.append(flight.message_id))
            assert let_go == []  # owed, not yet answered
            await queue.deletes.flush()
    assert let_go == [flight.message_id]
    assert [log["message_id"] for log in logs if log["event"] == "delete_failed"] == [
        flight.message_id
    ]
    after = REGISTRY.get_sample_value("mediamill_sqs_errors_total", {"operation": "delete"})
    assert (after or 0.0) == (errors or 0.0) + 1
    assert queue_counts(sqs, stack.queue_url) == (0, 1)  # comes back: its item is finished
