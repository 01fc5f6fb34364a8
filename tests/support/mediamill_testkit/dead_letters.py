"""Messages put into a dead-letter queue the way SQS puts them there, for the operator tests."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

from mediamill_core.keys import media_id_from_key
from mediamill_core.settings import Settings
from mediamill_testkit.client import Uploader, queue_counts
from mediamill_testkit.stages import CopyStage, FlakyStage
from stages import Stage
from stages.probe.stage import ProbeStage
from worker.aws import open_clients
from worker.claims import ClaimOutcome, Lease, stored_object
from worker.consumer import Worker
from worker.events import parse_message
from worker.publish import PublishStage
from worker.registry import LoadedStage, StageRegistry, instantiate
from worker.store import MediaStore


def registry(
    *classes: type[Stage], options: dict[str, dict[str, Any]] | None = None
) -> StageRegistry:
    options = options or {}
    return StageRegistry(
        [
            LoadedStage(stage=instantiate(cls, options.get(cls.name), cls.name))
            for cls in (ProbeStage, PublishStage, *classes)
        ]
    )


def bury(
    sqs: Any,
    queue_url: str,
    dlq_url: str,
    bodies: list[str],
    *,
    attributes: dict[str, Any] | None = None,
    within: float = 30.0,
) -> None:
    """Send each body to the queue and receive it, never deleting, until SQS moves it to the DLQ
    (after maxReceiveCount receives): what a consumer that cannot handle it does."""
    visible, hidden = queue_counts(sqs, dlq_url)
    expected = visible + hidden + len(bodies)
    for body in bodies:
        extra = {"MessageAttributes": attributes} if attributes else {}
        sqs.send_message(QueueUrl=queue_url, MessageBody=body, **extra)
    exhaust(sqs, queue_url, dlq_url, expected, within=within)


def exhaust(sqs: Any, queue_url: str, dlq_url: str, expected: int, within: float = 30.0) -> None:
    """Receive the queue's messages without deleting them until the DLQ holds ``expected``."""
    deadline = time.monotonic() + within
    while sum(queue_counts(sqs, dlq_url)) < expected:
        assert time.monotonic() < deadline, "the messages never reached the DLQ"
        sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=0
        )


async def claim_and_die(settings: Settings, message: dict[str, Any], lease_seconds: float) -> str:
    """Claim the upload a message announces as a worker does, then never finish it: what a
    worker killed mid-job leaves behind (PROCESSING, its lease lapsing). Returns the media id."""
    [upload] = parse_message(message["Body"]).uploads
    media_id = media_id_from_key(upload.key)
    assert media_id is not None
    obj = stored_object(upload)
    lease = Lease(secrets.token_hex(8), message["MessageId"], lease_seconds)

    async def etag() -> str:
        return upload.etag

    async with open_clients(settings) as aws:
        store = MediaStore(aws.dynamodb, settings.table)
        claim = await store.claim(
            media_id, obj, lease, receive_count=1, uploaded_at=None, current_etag=etag
        )
    assert claim.outcome is ClaimOutcome.CLAIMED
    return media_id


async def failed_retryable_upload(settings: Settings, photo: Path) -> str:
    """An upload whose every try met a transient fault: FAILED (retryable), its event in the DLQ."""
    media_id = Uploader(settings).upload(photo)
    flaky = registry(FlakyStage, options={"flaky": {"failures": 99}})
    await Worker(settings, flaky, burst=True).run()
    return media_id


async def process(settings: Settings) -> None:
    """Run a worker until the queue is empty, with stages that succeed."""
    await Worker(settings, registry(CopyStage), burst=True).run()
