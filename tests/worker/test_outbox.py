"""Every finished item announced once per fact; leases; the sweep; answers that were lost.

A write whose answer is lost is retried by botocore with the very same request, which then
meets the write it made itself: the tests repeat the request exactly, as that retry does.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import structlog
from aiohttp import web
from prometheus_client import REGISTRY

from mediamill_core.items import encode, iso, utc_now
from mediamill_core.keys import new_media_id, object_tag
from mediamill_core.payloads import media_event
from mediamill_core.settings import Settings
from mediamill_testkit.client import drain_events, raw_item
from worker.aws import open_clients
from worker.claims import ClaimOutcome, Lease, StoredObject
from worker.dev.devstack import Stack
from worker.events import sequencer_order
from worker.notify import MediaEvents, Outbox
from worker.store import MediaStore, StaleJob, owed_shard
from worker.sweep import Sweeper

pytestmark = pytest.mark.anyio


def stored(etag: str, sequencer: str) -> StoredObject:
    order = sequencer_order(sequencer)
    return StoredObject(etag, 100, None, sequencer, order, object_tag(etag, order))


OBJ = stored("etag-1", "0A")
NEWER = stored("etag-2", "0B")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def aws(settings: Settings) -> AsyncIterator[Any]:
    async with open_clients(settings) as clients:
        yield clients


@pytest.fixture
def store(aws: Any, settings: Settings) -> MediaStore:
    return MediaStore(aws.dynamodb, settings.table, event_lock_seconds=30)


def pending_item(dynamodb: Any, settings: Settings) -> str:
    media_id = new_media_id()
    item = {
        "media_id": media_id,
        "owner": "alice",
        "status": "PENDING_UPLOAD",
        "created_at": iso(utc_now()),
        "source": {"bucket": settings.originals_bucket, "key": f"originals/{media_id}"},
    }
    dynamodb.put_item(TableName=settings.table, Item=encode(item))
    return media_id


async def no_head() -> str | None:
    raise AssertionError("the order was known: S3 need not be asked")


async def claim(
    store: MediaStore, media_id: str, obj: StoredObject, lease: Lease, receives: int = 1
) -> Any:
    return await store.claim(
        media_id, obj, lease, receive_count=receives, uploaded_at=None, current_etag=no_head
    )


async def test_a_claim_whose_answer_was_lost_is_still_ours(
    store: MediaStore, dynamodb: Any, settings: Settings
) -> None:
    media_id = pending_item(dynamodb, settings)
    lease = Lease("job-1", "message-1", 60)
    assert (await claim(store, media_id, OBJ, lease)).outcome is ClaimOutcome.CLAIMED
    again = await claim(store, media_id, OBJ, lease)  # botocore's retry of the same request
    assert again.outcome is ClaimOutcome.CLAIMED
    assert again.item is not None
    assert again.item["attempts"] == 1


async def test_a_suspects_claim_whose_answer_was_lost_is_still_a_suspect(
    store: MediaStore, dynamodb: Any, settings: Settings
) -> None:
    media_id = pending_item(dynamodb, settings)
    await claim(store, media_id, OBJ, Lease("job-1", "message-1", 0.3))
    await anyio.sleep(0.4)  # its worker died with it
    lease = Lease("job-2", "message-1", 60)
    assert (await claim(store, media_id, OBJ, lease, 2)).suspect
    again = await claim(store, media_id, OBJ, lease, 2)  # botocore's retry of the same request
    assert again.outcome is ClaimOutcome.CLAIMED
    assert again.suspect  # else it would run beside other jobs, and kill them too
    await store.release_lease(media_id, lease)  # that try ended with a word
    innocent = Lease("job-3", "message-1", 60)
    assert not (await claim(store, media_id, OBJ, innocent, 3)).suspect
    assert not (await claim(store, media_id, OBJ, innocent, 3)).suspect


async def test_a_second_delivery_waits_for_the_lease_and_takes_over_once_it_lapses(
    store: MediaStore, dynamodb: Any, settings: Settings
) -> None:
    media_id = pending_item(dynamodb, settings)
    holder = Lease("job-1", "message-1", 1.5)
    assert (await claim(store, media_id, OBJ, holder)).outcome is ClaimOutcome.CLAIMED

    redelivered = await claim(store, media_id, OBJ, Lease("job-2", "message-1", 60), 2)
    assert redelivered.outcome is ClaimOutcome.LEASED
    assert redelivered.retry_after is not None
    assert 0 < redelivered.retry_after <= 3
    duplicate = await claim(store, media_id, OBJ, Lease("job-3", "message-2", 60))
    assert duplicate.outcome is ClaimOutcome.LEASED
    assert duplicate.item is not None
    assert duplicate.item["lease"]["message_id"] == "message-1"

    await anyio.sleep(1.6)  # the holder's worker died: its lease lapses
    taken = await claim(store, media_id, OBJ, Lease("job-4", "message-1", 60), 2)
    assert taken.outcome is ClaimOutcome.CLAIMED
    assert taken.item is not None
    assert taken.item["attempts"] == 2
    assert taken.item["lease"]["token"] == "job-4"


async def test_a_renewed_lease_keeps_duplicates_out(
    store: MediaStore, dynamodb: Any, settings: Settings
) -> None:
    media_id = pending_item(dynamodb, settings)
    holder = Lease("job-1", "message-1", 1.0)
    await claim(store, media_id, OBJ, holder)
    await anyio.sleep(0.6)
    assert await store.renew_lease(media_id, holder)
    await anyio.sleep(0.6)
    later = await claim(store, media_id, OBJ, Lease("job-2", "message-2", 60))
    assert later.outcome is ClaimOutcome.LEASED
    # A lease that is not ours any more is not renewed.
    assert not await store.renew_lease(media_id, Lease("someone", "message-9", 60))


async def test_a_newer_object_takes_over_a_leased_item_and_an_older_one_is_refused(
    store: MediaStore, dynamodb: Any, settings: Settings
) -> None:
    media_id = pending_item(dynamodb, settings)
    await claim(store, media_id, OBJ, Lease("job-1", "message-1", 60))
    newer = await claim(store, media_id, NEWER, Lease("job-2", "message-2", 60))
    assert newer.outcome is ClaimOutcome.CLAIMED
    assert newer.replaced
    older = await claim(store, media_id, OBJ, Lease("job-3", "message-3", 60))
    assert older.outcome is ClaimOutcome.OUTDATED
    # The job of the older object can no longer finish the item.
    with pytest.raises(StaleJob):
        await ready(store, media_id, OBJ.tag, "lock-1")


async def test_without_sequencers_the_object_s3_holds_now_is_the_newest(
    store: MediaStore, dynamodb: Any, settings: Settings
) -> None:
    media_id = pending_item(dynamodb, settings)
    first = StoredObject("etag-1", 1, None, None, None, "tag-a")
    second = StoredObject("etag-2", 1, None, None, None, "tag-b")
    await claim(store, media_id, first, Lease("job-1", "m-1", 60))
    asked: list[str] = []

    def s3_holds(etag: str) -> Any:
        async def current() -> str | None:
            asked.append(etag)
            return etag

        return current

    stale = await store.claim(
        media_id,
        second,
        Lease("job-2", "m-2", 60),
        receive_count=1,
        uploaded_at=None,
        current_etag=s3_holds("etag-1"),
    )
    assert stale.outcome is ClaimOutcome.OUTDATED
    fresh = await store.claim(
        media_id,
        second,
        Lease("job-3", "m-3", 60),
        receive_count=1,
        uploaded_at=None,
        current_etag=s3_holds("etag-2"),
    )
    assert fresh.outcome is ClaimOutcome.CLAIMED
    assert asked == ["etag-1", "etag-2"]


async def ready(store: MediaStore, media_id: str, tag: str, lock: str) -> dict[str, Any]:
    return await store.mark_ready(
        media_id,
        tag,
        lock_token=lock,
        kind="image",
        metadata={"width": 1},
        location=None,
        renditions={},
        stages=[],
        warnings=[],
    )


@pytest.mark.parametrize("outcome", ["ready", "failed"])
async def test_a_finishing_write_whose_answer_was_lost_is_a_success(
    store: MediaStore,
    aws: Any,
    dynamodb: Any,
    settings: Settings,
    stack: Stack,
    sqs: Any,
    media_events: str,
    outcome: str,
) -> None:
    media_id = pending_item(dynamodb, settings)
    await claim(store, media_id, OBJ, Lease("job-1", "message-1", 60))

    async def finish() -> dict[str, Any]:
        if outcome == "ready":
            return await ready(store, media_id, OBJ.tag, "lock-1")
        return await store.mark_failed(
            media_id,
            OBJ.tag,
            lock_token="lock-1",
            reason="the picture is not a picture",
            retryable=False,
            kind=None,
            stages=[],
            warnings=[],
        )

    first = await finish()
    retried = await finish()  # the same request again: it meets its own earlier write
    assert retried["status"] == first["status"]
    assert retried["processed_at"] == first["processed_at"]
    outbox = Outbox(MediaEvents(aws.sns, stack.media_topic_arn), store)
    assert await outbox.announce(retried, "lock-1")
    events = drain_events(sqs, media_events)
    assert [e["event_id"] for e in events] == [media_event(first)["event_id"]]
    assert events[0]["occurred_at"] == first["processed_at"]
    item = raw_item(dynamodb, settings.table, media_id)
    assert item is not None
    assert "event_pending" not in item


async def test_event_ids_name_the_fact_not_the_send() -> None:
    item = {
        "media_id": "m1",
        "status": "READY",
        "source": {"tag": "t1"},
        "processed_at": "2026-01-01T00:00:00.000Z",
    }
    first = media_event(item)
    assert media_event(dict(item))["event_id"] == first["event_id"]
    assert first["occurred_at"] == item["processed_at"]
    assert first["moderation"] == {"status": "off"}
    for changed in (
        {"processed_at": "2026-01-01T00:00:01.000Z"},
        {"source": {"tag": "t2"}},
        {"status": "FAILED"},
        {"media_id": "m2"},
    ):
        assert media_event({**item, **changed})["event_id"] != first["event_id"]


async def test_only_one_sender_at_a_time_and_a_failed_send_frees_the_event(
    store: MediaStore, aws: Any, dynamodb: Any, settings: Settings, stack: Stack
) -> None:
    media_id = pending_item(dynamodb, settings)
    await claim(store, media_id, OBJ, Lease("job-1", "message-1", 60))
    item = await ready(store, media_id, OBJ.tag, "lock-1")
    broken = Outbox(MediaEvents(aws.sns, stack.media_topic_arn + "-missing"), store)
    other = Outbox(MediaEvents(aws.sns, stack.media_topic_arn), store)
    # The finisher holds the lock: a redelivery or a sweep does not send meanwhile.
    assert not await other.announce(item, "sweep-1")
    with pytest.raises(Exception, match="not sent yet"):
        await broken.announce(item, "lock-1")
    # The failed send gave the lock up: the next sender need not wait for it to lapse.
    assert await other.announce(item, "sweep-1")
    assert not await other.announce(item, "sweep-2")  # nothing owed any more


class ThrottlingSns:
    """SNS's query API answering ``Throttled`` a few times, then accepting, as SNS does."""

    def __init__(self, throttles: int) -> None:
        self.throttles = throttles
        self.calls = 0
        self.published: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        form = await request.post()
        if self.calls <= self.throttles:
            body = (
                "<ErrorResponse><Error><Type>Sender</Type><Code>Throttled</Code>"
                "<Message>Rate exceeded</Message></Error><RequestId>r1</RequestId></ErrorResponse>"
            )
            return web.Response(status=400, text=body, content_type="text/xml")
        self.published.append(json.loads(str(form["Message"])))
        body = (
            "<PublishResponse><PublishResult><MessageId>m-1</MessageId></PublishResult>"
            "<ResponseMetadata><RequestId>r2</RequestId></ResponseMetadata></PublishResponse>"
        )
        return web.Response(status=200, text=body, content_type="text/xml")


async def test_sns_throttling_is_retried(settings: Settings) -> None:
    sns = ThrottlingSns(throttles=3)
    app = web.Application()
    app.router.add_post("/", sns.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        local = settings.model_copy(
            update={"endpoint_url": f"http://127.0.0.1:{port}", "aws_max_attempts": 1}
        )
        async with open_clients(local) as clients:
            events = MediaEvents(clients.sns, "arn:aws:sns:us-east-1:123456789012:media")
            event = {"type": "media.processed", "kind": "image", "event_id": "e1"}
            assert await events.publish(event)
    finally:
        await runner.cleanup()
    assert sns.calls == 4
    assert sns.published == [event]


def sweeper_for(
    aws: Any,
    settings: Settings,
    store: MediaStore,
    stack: Stack,
    *,
    grace_seconds: float,
    peek_dlq: bool = False,
) -> Sweeper:
    return Sweeper(
        dynamodb=aws.dynamodb,
        table=settings.table,
        store=store,
        outbox=Outbox(MediaEvents(aws.sns, stack.media_topic_arn), store),
        max_receive_count=stack.max_receive_count,
        grace_seconds=grace_seconds,
        interval_seconds=1,
        sqs=aws.sqs if peek_dlq else None,
        dead_letter_urls=[stack.dlq_url, stack.backfill_dlq_url] if peek_dlq else [],
        log=structlog.get_logger(),
    )


def put_processing(
    dynamodb: Any, settings: Settings, *, lease_expires: float, receives: int
) -> str:
    media_id = new_media_id()
    since = "2020-01-01T00:00:00.000Z"
    item = {
        "media_id": media_id,
        "owner": "alice",
        "status": "PROCESSING",
        "created_at": since,
        "source": OBJ.as_item(),
        "lease": {"token": "dead-job", "message_id": "m-1", "expires": lease_expires},
        "receive_count": receives,
        "attempts": receives,
        "owed_shard": owed_shard(media_id),
        "owed_since": since,
    }
    dynamodb.put_item(TableName=settings.table, Item=encode(item))
    return media_id


async def test_the_sweep_fails_an_upload_whose_every_try_killed_its_worker_and_sends_owed_events(
    store: MediaStore,
    aws: Any,
    dynamodb: Any,
    settings: Settings,
    stack: Stack,
    sqs: Any,
    media_events: str,
) -> None:
    now = time.time()
    killed = put_processing(dynamodb, settings, lease_expires=now - 5, receives=3)
    running = put_processing(dynamodb, settings, lease_expires=now + 60, receives=3)
    has_tries_left = put_processing(dynamodb, settings, lease_expires=now - 5, receives=2)
    owed = pending_item(dynamodb, settings)
    await claim(store, owed, OBJ, Lease("job-1", "m-1", 60))
    await ready(store, owed, OBJ.tag, "lock-1")
    await store.release_event_lock(owed, "lock-1")  # its sender died after READY

    sweeper = sweeper_for(aws, settings, store, stack, grace_seconds=1)
    await anyio.sleep(1.1)  # past the grace for the READY item
    killers = REGISTRY.get_sample_value("mediamill_uploads_killing_workers_total")
    report = await sweeper.sweep_once()
    assert (report.abandoned, report.announced) == (1, 1)
    assert REGISTRY.get_sample_value("mediamill_uploads_killing_workers_total") == killers + 1

    failed = raw_item(dynamodb, settings.table, killed)
    assert failed is not None
    assert failed["status"] == "FAILED"
    assert "killed" in failed["error"]
    assert "(3 seen)" in failed["error"]
    # Final: a stray copy of its message must not run it again (an operator reprocesses it).
    assert failed["error_retryable"] is False
    for untouched in (running, has_tries_left):
        item = raw_item(dynamodb, settings.table, untouched)
        assert item is not None
        assert item["status"] == "PROCESSING"
    events = {e["media_id"]: e for e in drain_events(sqs, media_events)}
    assert set(events) == {killed, owed}
    assert events[killed]["type"] == "media.failed"
    assert events[owed]["type"] == "media.processed"
    # A second sweep finds nothing owed: nothing is sent twice.
    again = await sweeper.sweep_once()
    assert (again.abandoned, again.announced) == (0, 0)
    assert drain_events(sqs, media_events) == []


async def test_a_try_that_died_makes_its_next_claim_a_suspect_and_a_retry_does_not(
    store: MediaStore, dynamodb: Any, settings: Settings
) -> None:
    media_id = pending_item(dynamodb, settings)
    first = await claim(store, media_id, OBJ, Lease("job-1", "m-1", 0.5))
    assert not first.suspect
    await anyio.sleep(0.6)  # its worker was killed: the lease lapses, nobody gave it up
    died = await claim(store, media_id, OBJ, Lease("job-2", "m-1", 60), 2)
    assert died.outcome is ClaimOutcome.CLAIMED
    assert died.suspect
    await store.release_lease(media_id, Lease("job-2", "m-1", 60))  # a retry later gives it up
    retried = await claim(store, media_id, OBJ, Lease("job-3", "m-1", 60), 3)
    assert retried.outcome is ClaimOutcome.CLAIMED
    assert not retried.suspect


async def test_the_sweep_reads_both_dlqs_when_the_item_missed_a_delivery(
    store: MediaStore,
    aws: Any,
    dynamodb: Any,
    settings: Settings,
    stack: Stack,
    sqs: Any,
) -> None:
    # A receive whose answer was lost counts for SQS, not for the item: its count stays short.
    now = time.time()
    short = put_processing(dynamodb, settings, lease_expires=now - 5, receives=2)
    # The same on the backfill lane, whose messages have a DLQ of their own.
    short_backfill = put_processing(dynamodb, settings, lease_expires=now - 5, receives=2)
    waiting = put_processing(dynamodb, settings, lease_expires=now - 5, receives=2)

    def record(media_id: str) -> str:
        created = {
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Post",
            "s3": {
                "bucket": {"name": settings.originals_bucket},
                "object": {
                    "key": f"originals/{media_id}",
                    "size": OBJ.size,
                    "eTag": OBJ.etag,
                    "sequencer": OBJ.sequencer,
                },
            },
        }
        return json.dumps({"Records": [created]})

    sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=record(short))
    sqs.send_message(QueueUrl=stack.dlq_url, MessageBody="not an event")
    sqs.send_message(QueueUrl=stack.backfill_dlq_url, MessageBody=record(short_backfill))
    sweeper = sweeper_for(aws, settings, store, stack, grace_seconds=3600, peek_dlq=True)
    report = await sweeper.sweep_once()
    assert report.abandoned == 2
    for media_id in (short, short_backfill):
        failed = raw_item(dynamodb, settings.table, media_id)
        assert failed is not None
        assert failed["status"] == "FAILED"
    assert (raw_item(dynamodb, settings.table, waiting) or {})["status"] == "PROCESSING"
    # Every message is still in its DLQ, for an operator.
    for url, count in ((stack.dlq_url, 2), (stack.backfill_dlq_url, 1)):
        attributes = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        assert int(attributes["ApproximateNumberOfMessages"]) == count


async def test_a_suspect_sent_elsewhere_stays_a_suspect_and_an_innocent_does_not_become_one(
    store: MediaStore, dynamodb: Any, settings: Settings
) -> None:
    media_id = pending_item(dynamodb, settings)
    sent_away = Lease("job-1", "m-1", 60)
    await claim(store, media_id, OBJ, sent_away)
    await store.send_on_lease(media_id, sent_away)  # requeued while another suspect ran
    again = await claim(store, media_id, OBJ, Lease("job-2", "m-2", 60))
    assert again.outcome is ClaimOutcome.CLAIMED  # at once: no lease to wait for
    assert again.suspect
    await store.release_lease(media_id, Lease("job-2", "m-2", 60))  # an innocent requeued
    third = await claim(store, media_id, OBJ, Lease("job-3", "m-3", 60))
    assert third.outcome is ClaimOutcome.CLAIMED
    assert not third.suspect


async def test_a_suspect_sent_on_again_and_again_counts_no_death_for_it(
    store: MediaStore,
    aws: Any,
    dynamodb: Any,
    settings: Settings,
    stack: Stack,
) -> None:
    """Several suspects back from one dead worker keep meeting one another: each time one has the
    worker, the others go elsewhere as copies. That is no death of theirs; counted as one, an
    innocent reached the deaths of a killer and ended FAILED as one."""
    media_id = pending_item(dynamodb, settings)
    await claim(store, media_id, OBJ, Lease("job-0", "m-0", 0.3))
    await anyio.sleep(0.4)  # its worker died with it: one death
    last = stack.max_receive_count
    for number in range(1, last + 2):
        lease = Lease(f"job-{number}", f"copy-{number}", 60)
        # The last one on its message's last receive: its copy has all its tries still.
        taken = await claim(store, media_id, OBJ, lease, last if number > last else 1)
        assert taken.suspect  # still a suspect, copy after copy
        assert taken.item is not None
        assert taken.item["deaths"] == 1
        await store.send_on_lease(media_id, lease)  # another suspect has this worker
    # Nor does the sweep take a suspect on its way elsewhere for one abandoned.
    sweeper = sweeper_for(aws, settings, store, stack, grace_seconds=0)
    assert (await sweeper.sweep_once()).abandoned == 0
    item = raw_item(dynamodb, settings.table, media_id)
    assert item is not None
    assert item["status"] == "PROCESSING"
    with pytest.raises(StaleJob):  # its conditional write says so too, should it read it late
        await store.mark_failed(
            media_id,
            OBJ.tag,
            lock_token="sweep",
            reason="abandoned",
            retryable=False,
            kind=None,
            stages=[],
            warnings=[],
            abandoned_after=last,
        )


async def test_deaths_are_counted_on_the_item_whatever_message_carries_the_try(
    store: MediaStore, dynamodb: Any, settings: Settings
) -> None:
    media_id = pending_item(dynamodb, settings)
    for number in range(3):
        # A copy of the message each time (another message id, receive count 1 again).
        lease = Lease(f"job-{number}", f"copy-{number}", 0.3)
        taken = await claim(store, media_id, OBJ, lease)
        assert taken.item is not None
        assert taken.item["deaths"] == number
        await anyio.sleep(0.4)  # killed: the lease lapses
    gave_up = Lease("job-9", "copy-9", 60)
    assert (await claim(store, media_id, OBJ, gave_up)).item["deaths"] == 3  # type: ignore[index]
    await store.release_lease(media_id, gave_up)  # this try ended with a word: not a death
    again = await claim(store, media_id, OBJ, Lease("job-10", "copy-10", 60))
    assert again.item is not None
    assert again.item["deaths"] == 3


@pytest.mark.parametrize("outcome", ["ready", "failed"])
async def test_a_finishing_write_answers_with_the_item_exactly_as_stored(
    store: MediaStore, dynamodb: Any, settings: Settings, outcome: str
) -> None:
    # The write is answered with the item before it and applied here: the answer must be the
    # stored item to the last value (1.0 stored as 1, tuples as lists, removals gone, rev + 1).
    media_id = pending_item(dynamodb, settings)
    lease = Lease("job-1", "message-1", 60)
    await claim(store, media_id, OBJ, lease)
    dynamodb.update_item(
        TableName=settings.table,
        Key=encode({"media_id": media_id}),
        UpdateExpression="SET #a = :a, #l = :l, #e = :e",
        ExpressionAttributeNames={"#a": "album", "#l": "location", "#e": "error"},
        ExpressionAttributeValues=encode(
            {":a": "holiday", ":l": {"lat": 1.5}, ":e": "an earlier try's"}
        ),
    )
    before = raw_item(dynamodb, settings.table, media_id)
    assert before is not None
    labels = [
        {"name": f"Label {n}", "confidence": 90.0 + n, "parents": ("Thing",), "categories": []}
        for n in range(20)
    ]
    if outcome == "ready":
        answer = await store.mark_ready(
            media_id,
            OBJ.tag,
            lock_token="lock-1",
            kind="image",
            metadata={"width": 4000.0, "ratio": 0.75, "tags": labels, "none": None},
            location=None,
            renditions={"preview": {"key": "r/p.jpg", "bytes": 1234, "width": 1440}},
            stages=[{"name": "probe", "seconds": 0.0123, "outcome": "ok"}],
            warnings=["w"],
        )
    else:
        answer = await store.mark_failed(
            media_id,
            OBJ.tag,
            lock_token="lock-1",
            reason="not a picture",
            retryable=False,
            kind=None,
            stages=[],
            warnings=[],
        )
    assert answer == raw_item(dynamodb, settings.table, media_id)
    assert answer["rev"] == int(before.get("rev") or 0) + 1
    assert answer["album"] == "holiday"  # written by someone else meanwhile: still in it
    assert "location" not in answer
