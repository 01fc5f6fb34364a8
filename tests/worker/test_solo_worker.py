"""Suspects run alone in a real worker: nothing else it holds goes down with one.

An upload that kills its worker on every try comes back as a suspect, and if it crashes while
the worker still holds another message (a job done but its message not yet deleted, a receive
whose answer is on its way), that message loses a try nothing counts. The messages of a dead
worker come back together, so the same ones meet the suspect again on each of its tries, until
an innocent upload ends READY with its message in the dead-letter queue. The proxy slows one
call, so that it is surely under way when the suspect could start; each test samples how many
messages are in flight while the suspect's stage runs: only its own may be.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from mediamill_core.keys import media_id_from_key, object_tag
from mediamill_core.settings import Settings
from mediamill_testkit.client import Uploader, queue_counts, raw_item
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
from worker.registry import LoadedStage, StageRegistry, instantiate
from worker.store import MediaStore

pytestmark = pytest.mark.anyio

DEAD = "dead-worker"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pipeline(record: Path) -> StageRegistry:
    """probe, a second of work that notes its start and end, publish."""
    sleepy = {"seconds": 1.0, "record_to": str(record)}
    return StageRegistry(
        [
            LoadedStage(stage=instantiate(ProbeStage, None, "probe")),
            LoadedStage(stage=instantiate(SleepyStage, sleepy, "sleepy")),
            LoadedStage(stage=instantiate(PublishStage, None, "publish")),
        ]
    )


def uploads(uploader: Uploader, sqs: Any, stack: Stack, paths: list[Path]) -> dict[str, Any]:
    """Each upload's S3 notification, received once (and so in flight) with its media id."""
    sqs.purge_queue(QueueUrl=stack.queue_url)
    ids = [uploader.upload(path) for path in paths]
    got = sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    messages = {media_of(m): m for m in got["Messages"]}
    assert sorted(messages) == sorted(ids)
    return messages


def media_of(message: dict[str, Any]) -> str:
    [upload] = parse_message(message["Body"]).uploads
    media_id = media_id_from_key(upload.key)
    assert media_id is not None
    return media_id


async def leave_for_dead(settings: Settings, media_id: str, message: dict[str, Any]) -> None:
    """A try that died with its worker: claimed, and its lease left to lapse."""
    [upload] = parse_message(message["Body"]).uploads
    obj = StoredObject(
        upload.etag,
        upload.size,
        upload.version_id,
        upload.sequencer,
        upload.order,
        object_tag(upload.etag, upload.order, upload.version_id),
    )
    async with open_clients(settings) as aws:
        store = MediaStore(aws.dynamodb, settings.table, event_lock_seconds=30)
        await store.claim(
            media_id,
            obj,
            Lease(DEAD, message["MessageId"], 0.1),
            receive_count=1,
            uploaded_at=None,
            current_etag=no_head,
        )
    await anyio.sleep(0.2)


async def no_head() -> str | None:
    raise AssertionError("the sequencer orders the objects: S3 need not be asked")


def make_visible(sqs: Any, stack: Stack, message: dict[str, Any]) -> None:
    sqs.change_message_visibility(
        QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )


@dataclass(slots=True)
class Scene:
    """An innocent upload and a suspect (its last try died), each received once already."""

    uploader: Uploader
    messages: dict[str, dict[str, Any]]
    innocent: str
    suspect: str
    record: Path  # where the stage notes each start and end
    samples: list[int] = field(default_factory=list)


@pytest.fixture
async def scene(settings: Settings, stack: Stack, sqs: Any, tmp_path: Path) -> Scene:
    uploader = Uploader(settings)
    paths = [write_png(tmp_path / "innocent.png", 64, 48), write_png(tmp_path / "s.png", 48, 64)]
    messages = uploads(uploader, sqs, stack, paths)
    innocent, suspect = list(messages)
    await leave_for_dead(settings, suspect, messages[suspect])
    return Scene(uploader, messages, innocent, suspect, tmp_path / "runs.txt")


async def sample_in_flight(scene: Scene, sqs: Any, stack: Stack) -> None:
    """How many messages are in flight as the suspect's stage starts, and as it ends."""
    notes = anyio.Path(scene.record)
    for mark in ("start", "done"):
        for _ in range(3000):
            text = await notes.read_text() if await notes.exists() else ""
            if f"{mark} {scene.suspect} " in text:
                _, in_flight = await anyio.to_thread.run_sync(queue_counts, sqs, stack.queue_url)
                scene.samples.append(in_flight)
                break
            await anyio.sleep(0.01)


async def run_worker(
    settings: Settings, proxy: FaultProxy, scene: Scene, sqs: Any, stack: Stack, *also: Any
) -> None:
    """A worker in burst mode through the proxy, the sampler and ``also`` beside it."""
    proxied = settings.model_copy(update={"endpoint_url": proxy.endpoint})
    async with anyio.create_task_group() as group:
        group.start_soon(sample_in_flight, scene, sqs, stack)
        for task in also:
            group.start_soon(task)
        await Worker(proxied, pipeline(scene.record), burst=True).run()


def all_settled(scene: Scene, sqs: Any, stack: Stack) -> None:
    for media_id in (scene.innocent, scene.suspect):
        assert scene.uploader.get(media_id)["status"] == "READY"
    assert queue_counts(sqs, stack.queue_url) == (0, 0)
    dead = sqs.receive_message(QueueUrl=stack.dlq_url, WaitTimeSeconds=0)
    assert dead.get("Messages", []) == []


async def test_a_suspect_starts_only_once_a_finished_batch_mates_message_is_deleted(
    scene: Scene, settings: Settings, stack: Stack, sqs: Any, aws_endpoint: str
) -> None:
    for message in scene.messages.values():
        make_visible(sqs, stack, message)  # both in the worker's first receive
    with FaultProxy(aws_endpoint) as proxy:
        # The first delete is the innocent's, once its job is done (the suspect's comes after).
        proxy.slow("sqs", 1.5, operation="DeleteMessageBatch")
        await run_worker(settings, proxy, scene, sqs, stack)

    assert scene.samples == [1, 1]  # only its own: the innocent's was deleted (or sent on)
    all_settled(scene, sqs, stack)


async def test_a_suspect_starts_only_once_a_receive_under_way_has_answered(
    scene: Scene, settings: Settings, stack: Stack, sqs: Any, dynamodb: Any, aws_endpoint: str
) -> None:
    make_visible(sqs, stack, scene.messages[scene.suspect])
    # The innocent's notification comes again once the suspect is claimed: the receive the
    # worker has under way then brings it.
    innocent = scene.messages[scene.innocent]
    sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=innocent["ReceiptHandle"])

    async def send_once_the_suspect_is_claimed() -> None:
        for _ in range(3000):
            item = await anyio.to_thread.run_sync(raw_item, dynamodb, settings.table, scene.suspect)
            if item is not None and (item.get("lease") or {}).get("token") not in (DEAD, None):
                sqs.send_message(QueueUrl=stack.queue_url, MessageBody=innocent["Body"])
                return
            await anyio.sleep(0.01)

    with FaultProxy(aws_endpoint) as proxy:
        # Every receive answers 2 s after SQS has handed its messages out: the first brings the
        # suspect, the second is under way (a long poll) when the suspect is claimed.
        queue_url = f'"{stack.queue_url}"'.encode()
        proxy.slow("sqs", 2.0, operation="ReceiveMessage", count=2, match=queue_url, answer=True)
        await run_worker(settings, proxy, scene, sqs, stack, send_once_the_suspect_is_claimed)

    assert scene.samples == [1, 1]  # only its own: what the receive brought went on as a copy
    all_settled(scene, sqs, stack)
