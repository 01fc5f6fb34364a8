"""Each message acts on its own queue: deletes, heartbeats, releases, retries and requeues of the
media lane and the backfill lane, against moto's two queues."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import structlog

from mediamill_core.settings import Settings
from mediamill_testkit.client import queue_counts
from worker.aws import open_clients
from worker.dev.devstack import Stack
from worker.queue import BACKFILL, MEDIA, InFlight, MediaQueue

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def bodies(sqs: Any, url: str) -> list[str]:
    """What is visible on a queue now, taken and at once given back."""
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    messages = got.get("Messages", [])
    for message in messages:
        sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    return sorted(message["Body"] for message in messages)


def fill(sqs: Any, stack: Stack) -> None:
    sqs.purge_queue(QueueUrl=stack.queue_url)  # S3's test event
    for lane, url in ((MEDIA, stack.queue_url), (BACKFILL, stack.backfill_queue_url)):
        for number in (1, 2):
            sqs.send_message(QueueUrl=url, MessageBody=f"{lane}-{number}")


async def take(queue: MediaQueue, lane: Any) -> list[InFlight]:
    flights = await queue.receive(2, anyio.Event(), lane=lane, wait_seconds=1)
    assert sorted(flight.body for flight in flights) == [f"{lane}-1", f"{lane}-2"]
    return sorted(flights, key=lambda flight: flight.body)


async def test_each_lane_has_its_own_redrive_policy_and_dead_letter_queue(
    settings: Settings, stack: Stack
) -> None:
    async with open_clients(settings) as aws:
        queue = MediaQueue(aws.sqs, settings, structlog.get_logger())
        await queue.read_redrive_policy()
    assert list(queue.lanes) == [MEDIA, BACKFILL]
    assert queue.lanes[MEDIA].url == stack.queue_url
    assert queue.lanes[BACKFILL].url == stack.backfill_queue_url
    assert queue.lanes[MEDIA].dead_letter_url == stack.dlq_url
    assert queue.lanes[BACKFILL].dead_letter_url == stack.backfill_dlq_url
    assert queue.dead_letter_urls == [stack.dlq_url, stack.backfill_dlq_url]
    assert {lane.max_receive_count for lane in queue.lanes.values()} == {3}


async def test_without_a_backfill_queue_the_worker_has_one_lane(settings: Settings) -> None:
    one_lane = settings.model_copy(update={"backfill_queue_url": None})
    async with open_clients(one_lane) as aws:
        queue = MediaQueue(aws.sqs, one_lane, structlog.get_logger())
        await queue.read_redrive_policy()
    assert list(queue.lanes) == [MEDIA]
    assert len(queue.dead_letter_urls) == 1


async def test_heartbeats_deletes_and_releases_act_on_each_messages_own_queue(
    settings: Settings, stack: Stack, sqs: Any
) -> None:
    quick = settings.model_copy(update={"visibility_timeout": 2})
    fill(sqs, stack)
    async with open_clients(quick) as aws:
        queue = MediaQueue(aws.sqs, quick, structlog.get_logger())
        media = await take(queue, MEDIA)
        backfill = await take(queue, BACKFILL)
        assert {(f.lane, f.queue_url) for f in media} == {(MEDIA, stack.queue_url)}
        assert {(f.lane, f.queue_url) for f in backfill} == {(BACKFILL, stack.backfill_queue_url)}
        queue.in_flight.update([*media, *backfill])
        async with anyio.create_task_group() as group:
            group.start_soon(queue.run)
            # Past the 2 s timeout: only the heartbeat, on each queue, keeps them hidden.
            await anyio.sleep(3.5)
            assert bodies(sqs, stack.queue_url) == []
            assert bodies(sqs, stack.backfill_queue_url) == []
            # Deletes finishing together, one from each lane: each from its own queue.
            queue.delete(media[0])
            queue.delete(backfill[0])
            await queue.deletes.flush()
            await queue.release([media[1], backfill[1]])
            group.cancel_scope.cancel()
    assert bodies(sqs, stack.queue_url) == ["media-2"]
    assert bodies(sqs, stack.backfill_queue_url) == ["backfill-2"]


async def test_retries_and_requeues_go_back_to_the_queue_each_message_came_from(
    settings: Settings, stack: Stack, sqs: Any
) -> None:
    fill(sqs, stack)
    log = structlog.get_logger()
    async with open_clients(settings) as aws:
        queue = MediaQueue(aws.sqs, settings, log)
        media = await take(queue, MEDIA)
        backfill = await take(queue, BACKFILL)
        async with anyio.create_task_group() as group:
            group.start_soon(queue.run)
            await queue.requeue(backfill[0], log)  # a copy, then the original deleted
            await queue.requeue(media[0], log)
            await queue.retry_later(backfill[1], 1, log)
            await queue.retry_later(media[1], 1, log)
            await queue.deletes.flush()  # the originals' deletes, owed
            group.cancel_scope.cancel()
    await anyio.sleep(1.5)  # the retries' backoff
    assert bodies(sqs, stack.queue_url) == ["media-1", "media-2"]
    assert bodies(sqs, stack.backfill_queue_url) == ["backfill-1", "backfill-2"]
    assert queue_counts(sqs, stack.queue_url) == (2, 0)
    assert queue_counts(sqs, stack.backfill_queue_url) == (2, 0)


async def test_a_failing_backfill_queue_does_not_make_the_worker_unhealthy(
    settings: Settings, stack: Stack, sqs: Any
) -> None:
    # A media receive that fails pauses min(5, the retry base) seconds: 5 here.
    quick = settings.model_copy(
        update={"health_receive_seconds": 0.2, "retry_base_seconds": 5, "retry_max_seconds": 10}
    )
    async with open_clients(quick) as aws:
        queue = MediaQueue(aws.sqs, quick, structlog.get_logger())
        sqs.delete_queue(QueueUrl=stack.backfill_queue_url)
        with anyio.fail_after(2):  # no pause after the failure: the media poll that follows is it
            assert await queue.receive(1, anyio.Event(), lane=BACKFILL, wait_seconds=0) == []
        await anyio.sleep(0.3)
        assert await queue.receive(1, anyio.Event(), lane=BACKFILL, wait_seconds=0) == []
        # Fresh uploads still flow: replacing the task would only interrupt them.
        assert queue.health_problems() == []
        assert queue.lanes[BACKFILL].failing_since is not None
        assert "QueueDoesNotExist" in queue.lanes[BACKFILL].error or (
            "NonExistentQueue" in queue.lanes[BACKFILL].error
        )
