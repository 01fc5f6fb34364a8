"""DELETE /media/{id}: objects, then the event, then the item; idempotent as a 404."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

import pytest

from mediamill_core.settings import Settings
from mediamill_testkit.client import raw_item
from worker.dev.devstack import Stack
from worker.store import ClaimOutcome

Call = Callable[..., tuple[int, dict[str, str], Any]]


@pytest.fixture
def media_events(sqs: Any, sns: Any, stack: Stack) -> Callable[[], list[dict[str, Any]]]:
    """Whatever reached the media topic since the fixture started, through an SQS queue."""
    queue_url = sqs.create_queue(QueueName=f"events-{secrets.token_hex(4)}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=stack.media_topic_arn, Protocol="sqs", Endpoint=arn)

    def received() -> list[dict[str, Any]]:
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        return [json.loads(message["Body"]) for message in answer.get("Messages", [])]

    return received


def _keys(s3: Any, bucket: str) -> list[str]:
    return [entry["Key"] for entry in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_removes_original_renditions_strays_and_item_then_says_so(
    call: Call,
    put_ready: Any,
    s3: Any,
    dynamodb: Any,
    settings: Settings,
    media_events: Callable[[], list[dict[str, Any]]],
) -> None:
    media_id, _ = put_ready(album="Summer")
    # A rendition the item does not list: a job that lost the race to a deletion left it.
    s3.put_object(Bucket=settings.renditions_bucket, Key=f"{media_id}/stray.webp", Body=b"x")
    kept, _ = put_ready()

    status, headers, body = call("DELETE", f"/media/{media_id}")

    assert (status, body) == (204, None)
    assert headers["cache-control"] == "no-store"
    assert raw_item(dynamodb, settings.table, media_id) is None
    assert _keys(s3, settings.originals_bucket) == [f"originals/{kept}"]
    assert all(key.startswith(f"{kept}/") for key in _keys(s3, settings.renditions_bucket))
    assert len(_keys(s3, settings.renditions_bucket)) == 2

    [envelope] = media_events()
    event = json.loads(envelope["Message"])
    assert event["type"] == "media.deleted"
    assert (event["media_id"], event["owner"], event["album"]) == (media_id, "alice", "Summer")
    assert event["kind"] == "image"
    attributes = envelope["MessageAttributes"]
    assert attributes["type"] == {"Type": "String", "Value": "media.deleted"}
    assert attributes["kind"] == {"Type": "String", "Value": "image"}


def test_second_delete_is_404_and_sends_nothing(
    call: Call, put_ready: Any, media_events: Callable[[], list[dict[str, Any]]]
) -> None:
    media_id, _ = put_ready()
    assert call("DELETE", f"/media/{media_id}")[0] == 204
    assert len(media_events()) == 1
    status, _, body = call("DELETE", f"/media/{media_id}")
    assert status == 404
    assert body["error"]["message"] == "no such media"
    assert media_events() == []


def test_a_delete_stopped_half_way_is_finished_by_the_retry(
    call: Call, put_ready: Any, s3: Any, dynamodb: Any, settings: Settings
) -> None:
    # What a failure after the first step leaves: the item marked, its objects still there.
    media_id, _ = put_ready(status="DELETING")
    assert call("GET", f"/media/{media_id}")[0] == 404  # to its owner it is already gone

    assert call("DELETE", f"/media/{media_id}")[0] == 204
    assert raw_item(dynamodb, settings.table, media_id) is None
    assert _keys(s3, settings.originals_bucket) == []
    assert _keys(s3, settings.renditions_bucket) == []


def test_pending_upload_is_deleted_without_an_original(
    call: Call, dynamodb: Any, settings: Settings
) -> None:
    _, _, created = call(
        "POST", "/uploads", body={"filename": "a.jpg", "content_type": "image/jpeg", "size": 10}
    )
    assert call("DELETE", f"/media/{created['media_id']}")[0] == 204
    assert raw_item(dynamodb, settings.table, created["media_id"]) is None


def test_a_job_cannot_claim_an_item_being_deleted(
    claim: Callable[..., ClaimOutcome], put_ready: Any, dynamodb: Any, settings: Settings
) -> None:
    """The worker's claim is conditional: a late upload event must not revive the item."""
    media_id, _ = put_ready(status="DELETING")
    assert claim(media_id, etag="another-etag") is ClaimOutcome.MISSING
    assert raw_item(dynamodb, settings.table, media_id)["status"] == "DELETING"  # type: ignore[index]
