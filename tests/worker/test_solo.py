"""Suspects run alone: the gate, and the copy that sends a co-received message elsewhere."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import structlog

from mediamill_core.settings import Settings
from worker.aws import open_clients
from worker.dev.devstack import Stack
from worker.queue import InFlight, MediaQueue
from worker.solo import SoloGate

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
            flight = InFlight.from_message(message, queue.lanes["media"])
            await queue.requeue(flight, structlog.get_logger())
            await queue.deletes.flush()  # the originals' deletes, owed
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


async def test_a_suspect_waits_for_a_receive_under_way_and_what_it_brings() -> None:
    gate = SoloGate()
    gate.hold("its-own")
    entered = anyio.Event()

    async def suspect() -> None:
        async with gate.alone("its-own"):
            entered.set()

    async with anyio.create_task_group() as group:
        with gate.receiving():  # SQS has counted a try for whatever this brings
            group.start_soon(suspect)
            await anyio.sleep(0.2)
            assert not entered.is_set()
            gate.hold("brought")  # held before the receive counts as over
        await anyio.sleep(0.1)
        assert not entered.is_set()
        gate.let_go("brought")
        with anyio.fail_after(1):
            await entered.wait()
