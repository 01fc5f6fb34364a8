"""A dead letter as an operator reads it: what it carried, for which item, and what a redrive does.

The body is read with the worker's own parser, so a message the worker could not read is shown
as malformed with the very reason the worker logged, never guessed at.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mediamill_core.items import MediaStatus, decode, iso
from mediamill_core.keys import is_media_id, media_id_from_key, object_tag
from mediamill_core.reprocess import REQUEST_TYPE
from worker.claims import lease_left
from worker.events import MalformedMessage, UploadEvent, parse_message

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_GET_BATCH = 100  # BatchGetItem's limit


@dataclass(frozen=True, slots=True)
class CarriedUpload:
    """One upload event a message announces."""

    media_id: str | None
    event: UploadEvent

    @property
    def tag(self) -> str:
        return object_tag(self.event.etag, self.event.order, self.event.version_id)

    def as_json(self) -> dict[str, Any]:
        event = self.event
        return {
            "media_id": self.media_id,
            "event_name": event.event_name,
            "bucket": event.bucket,
            "key": event.key,
            "size": event.size,
            "etag": event.etag,
            "event_time": iso(event.event_time) if event.event_time else None,
            "object_tag": self.tag,
        }


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message of a dead-letter queue, read but not taken."""

    lane: str
    message_id: str
    body: str
    attributes: dict[str, str]
    message_attributes: dict[str, Any]
    # "upload", "reprocess" (a backfill request), "ignored" (well formed, nothing to do) or
    # "malformed"; ``problem`` says why for the last two.
    shape: str
    problem: str | None
    uploads: tuple[CarriedUpload, ...]
    request: dict[str, Any] | None

    @property
    def media_ids(self) -> tuple[str, ...]:
        if self.request is not None:
            return (str(self.request["media_id"]),)
        return tuple(dict.fromkeys(u.media_id for u in self.uploads if u.media_id))

    @property
    def receive_count(self) -> int:
        return int(self.attributes.get("ApproximateReceiveCount", "0"))

    @property
    def sent_at(self) -> datetime | None:
        return _millis(self.attributes.get("SentTimestamp"))

    @property
    def first_received_at(self) -> datetime | None:
        return _millis(self.attributes.get("ApproximateFirstReceiveTimestamp"))

    def age_seconds(self, now: float) -> float | None:
        sent = self.sent_at
        return None if sent is None else max(0.0, now - sent.timestamp())


def read_letter(lane: str, message: dict[str, Any]) -> DeadLetter:
    body = str(message.get("Body", ""))
    shape, problem, uploads, request = _classify(body)
    return DeadLetter(
        lane=lane,
        message_id=str(message["MessageId"]),
        body=body,
        attributes=dict(message.get("Attributes", {})),
        message_attributes=dict(message.get("MessageAttributes", {})),
        shape=shape,
        problem=problem,
        uploads=uploads,
        request=request,
    )


def _classify(
    body: str,
) -> tuple[str, str | None, tuple[CarriedUpload, ...], dict[str, Any] | None]:
    try:
        parsed = parse_message(body)
    except MalformedMessage as exc:
        request = _reprocess_request(body)
        if request is not None:
            return "reprocess", None, (), request
        return "malformed", str(exc), (), None
    if parsed.ignored:
        return "ignored", parsed.ignored, (), None
    carried = tuple(CarriedUpload(media_id_from_key(u.key), u) for u in parsed.uploads)
    return "upload", None, carried, None


def _reprocess_request(body: str) -> dict[str, Any] | None:
    """A backfill message (`mediamill reprocess`): ``type`` mediamill.reprocess, one media id."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if (
        isinstance(document, dict)
        and document.get("type") == REQUEST_TYPE
        and is_media_id(str(document.get("media_id", "")))
    ):
        return document
    return None


def _millis(value: str | None) -> datetime | None:
    if value is None or not value.isdigit():
        return None
    return datetime.fromtimestamp(int(value) / 1000, UTC)


def fetch_items(
    dynamodb: DynamoDBClient, table: str, media_ids: set[str]
) -> dict[str, dict[str, Any] | None]:
    """The items of these media ids, None for each that has none (consistent reads)."""
    found: dict[str, dict[str, Any] | None] = dict.fromkeys(media_ids)
    ids = sorted(media_ids)
    for start in range(0, len(ids), _GET_BATCH):
        keys: list[Any] = [
            {"media_id": {"S": media_id}} for media_id in ids[start : start + _GET_BATCH]
        ]
        while keys:
            answer = dynamodb.batch_get_item(
                RequestItems={table: {"Keys": keys, "ConsistentRead": True}}
            )
            for raw in answer.get("Responses", {}).get(table, []):
                item = decode(dict(raw))
                found[str(item["media_id"])] = item
            # Throttled keys come back unprocessed: ask again for those (botocore backs off).
            unprocessed: dict[str, Any] = dict(answer.get("UnprocessedKeys", {}))
            keys = list((unprocessed.get(table) or {}).get("Keys", []))
    return found


def item_summary(item: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a dead letter's reader needs of its item."""
    if item is None:
        return None
    fields = ("status", "kind", "error", "error_retryable", "receive_count", "attempts", "deaths")
    summary = {name: item.get(name) for name in fields if item.get(name) is not None}
    summary["last_try_at"] = item.get("processing_started_at")
    summary["updated_at"] = item.get("updated_at")
    summary["object_tag"] = (item.get("source") or {}).get("tag")
    return summary


def on_redrive(item: dict[str, Any] | None, upload: CarriedUpload) -> str:
    """What the worker will do with this upload's message if it is moved back."""
    if item is None:
        return "no item: acknowledged as an orphan, nothing done"
    status = item.get("status")
    current = (item.get("source") or {}).get("tag")
    if status == MediaStatus.DELETING.value:
        return "being deleted: acknowledged, nothing done"
    if current and current != upload.tag:
        return "another object than the item's: done nothing for if older, taken over if newer"
    if status == MediaStatus.READY.value:
        return "already READY: acknowledged, nothing done"
    if status == MediaStatus.FAILED.value:
        if item.get("error_retryable") is True:
            return "processed again (FAILED on our side, retryable)"
        return "FAILED for good: acknowledged, nothing done (reprocess it instead)"
    if status == MediaStatus.PROCESSING.value and lease_left(item, time.time()) > 0:
        return "a job holds it now: waits for that job's lease"
    return "processed again"


def letter_outlook(letter: DeadLetter, items: dict[str, dict[str, Any] | None]) -> list[str]:
    """One line per upload (or a line for the whole message) saying what a redrive does."""
    if letter.shape == "malformed":
        return ["malformed: back in the DLQ after its receives; purge it once read"]
    if letter.shape == "ignored":
        return [f"acknowledged and ignored ({letter.problem})"]
    if letter.shape == "reprocess":
        return ["a reprocess request: run again, or ignored if the item has it done by then"]
    return [on_redrive(items.get(u.media_id or ""), u) for u in letter.uploads]


def letter_json(letter: DeadLetter, items: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """The JSON form of one dead letter, as ``dlq list --json`` prints it."""
    sent, first = letter.sent_at, letter.first_received_at
    return {
        "queue": letter.lane,
        "message_id": letter.message_id,
        "shape": letter.shape,
        "problem": letter.problem,
        "media_ids": list(letter.media_ids),
        "receive_count": letter.receive_count,
        "sent_at": iso(sent) if sent else None,
        "first_received_at": iso(first) if first else None,
        "uploads": [upload.as_json() for upload in letter.uploads],
        "request": letter.request,
        "items": {media_id: item_summary(items.get(media_id)) for media_id in letter.media_ids},
        "on_redrive": letter_outlook(letter, items),
    }
