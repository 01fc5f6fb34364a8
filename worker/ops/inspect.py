"""`mediamill inspect MEDIA_ID`: everything known about one upload, for "my video is stuck".

The item, its stages' provenance, its objects in S3 and where its message may be. SQS cannot
list the messages in flight: what can be known is whether a job holds the item's lease now (the
worker renews it while a job runs) and how many messages the queue has in flight in all; a
message in a DLQ can be found, by reading the DLQ.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from botocore.exceptions import ClientError

from mediamill_core.hls import held_keys
from mediamill_core.items import MediaStatus, decode, iso, parse_iso
from mediamill_core.keys import is_media_id, original_key
from mediamill_core.settings import Settings
from worker.claims import lease_left
from worker.ops.dlq import read_dead_letters
from worker.ops.lanes import OpsClients, OpsError, find_lanes
from worker.ops.letters import DeadLetter, letter_json, letter_outlook
from worker.ops.tables import clip, moment, print_table, size, span


class UnknownMedia(OpsError):
    """No item has this media id."""


@dataclass(slots=True)
class Inspection:
    media_id: str
    item: dict[str, Any]
    original: dict[str, Any] | None
    objects: list[dict[str, Any]]
    queues: list[dict[str, Any]]
    letters: list[DeadLetter]
    stuck_after: float | None
    findings: list[str] = field(default_factory=list)


def inspect_media(
    clients: OpsClients, settings: Settings, media_id: str, *, stuck_after: float | None
) -> Inspection:
    """Read all there is about one media id; UnknownMedia when it has no item."""
    if not is_media_id(media_id):
        raise OpsError(f"{media_id!r} is not a media id (32 hexadecimal digits)")
    answer = clients.dynamodb.get_item(
        TableName=settings.table, Key={"media_id": {"S": media_id}}, ConsistentRead=True
    )
    original = _original(clients, settings, media_id)
    if "Item" not in answer:
        where = f"; an original is in s3://{settings.originals_bucket}/{original_key(media_id)}"
        raise UnknownMedia(
            f"no item has media id {media_id} in table {settings.table}"
            + (where + " (deleted, or not uploaded through the API)" if original else "")
        )
    item = decode(dict(answer["Item"]))
    lanes = find_lanes(clients.sqs, settings, None)
    queues = [_queue_counts(clients, lane.name, lane.queue_url) for lane in lanes]
    dead = read_dead_letters(clients, settings, None)
    letters = [letter for letter in dead.letters if media_id in letter.media_ids]
    found = Inspection(
        media_id=media_id,
        item=item,
        original=original,
        objects=_renditions(clients, settings, media_id, item),
        queues=queues,
        letters=letters,
        stuck_after=stuck_after,
    )
    found.findings = _findings(found, dead.items)
    return found


def _original(clients: OpsClients, settings: Settings, media_id: str) -> dict[str, Any] | None:
    try:
        head = clients.s3.head_object(Bucket=settings.originals_bucket, Key=original_key(media_id))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return {
        "bucket": settings.originals_bucket,
        "key": original_key(media_id),
        "size": head.get("ContentLength"),
        "etag": str(head.get("ETag", "")).strip('"'),
        "last_modified": iso(head["LastModified"]) if "LastModified" in head else None,
        "content_type": head.get("ContentType"),
        "version_id": head.get("VersionId"),
    }


def _renditions(
    clients: OpsClients, settings: Settings, media_id: str, item: dict[str, Any]
) -> list[dict[str, Any]]:
    """Every object under the media id's prefix, and which set it belongs to."""
    current = (item.get("source") or {}).get("tag")
    held = held_keys(item.get("renditions") or {})
    found = []
    pages = clients.s3.get_paginator("list_objects_v2").paginate(
        Bucket=settings.renditions_bucket, Prefix=f"{media_id}/"
    )
    for page in pages:
        for obj in page.get("Contents", []):
            key = str(obj.get("Key"))
            tag = key.split("/")[1] if key.count("/") >= 2 else None
            if held(key):
                belongs = "current"
            elif tag is not None and tag == current:
                belongs = "current tag, not in the item (a job under way, or one refused)"
            else:
                belongs = "leftover of an earlier object"
            modified: datetime | None = obj.get("LastModified")
            found.append(
                {
                    "key": key,
                    "size": obj.get("Size"),
                    "last_modified": iso(modified) if modified else None,
                    "tag": tag,
                    "belongs": belongs,
                }
            )
    return found


def _queue_counts(clients: OpsClients, lane: str, url: str) -> dict[str, Any]:
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    answer = clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    attributes: dict[str, str] = {str(k): v for k, v in answer.get("Attributes", {}).items()}
    visible, in_flight, delayed = (int(attributes.get(name, "0")) for name in names)
    return {"queue": lane, "visible": visible, "in_flight": in_flight, "delayed": delayed}


def _findings(found: Inspection, items: dict[str, dict[str, Any] | None]) -> list[str]:
    """What an operator should know first, most telling first."""
    item, now = found.item, time.time()
    status = item.get("status")
    notes: list[str] = []
    lease = item.get("lease") or {}
    left = lease_left(item, now)
    since = _seconds_since(item.get("processing_started_at"), now)
    if status == MediaStatus.PROCESSING.value:
        if found.stuck_after is not None and since is not None and since > found.stuck_after:
            notes.append(
                f"stuck: PROCESSING for {span(since)} since its last claim, longer than any try "
                f"and the wait for the next may take ({span(found.stuck_after)})"
            )
        elif since is not None:
            notes.append(f"PROCESSING for {span(since)} since its last claim")
        if left > 0:
            notes.append(
                f"a job holds it now: its lease runs {span(left)} more "
                f"(message {lease.get('message_id')})"
            )
        elif lease:
            notes.append(
                "no job holds it: the last job's lease lapsed (its worker died or was stopped); "
                "the message's next delivery takes it over, the sweep ends it FAILED after the last"
            )
    in_flight = sum(q["in_flight"] for q in found.queues)
    if status == MediaStatus.PROCESSING.value and left <= 0 and not found.letters:
        notes.append(
            f"{in_flight} message(s) are in flight on the queue(s) in all; SQS cannot say whether "
            "one is this item's: if none comes back within the visibility timeout, no message "
            "for it is left (see the runbook: copy the original onto itself)"
        )
    for letter in found.letters:
        outlook = "; ".join(letter_outlook(letter, items))
        notes.append(
            f"a message for it is in the {letter.lane} DLQ ({letter.message_id}): on redrive, "
            f"{outlook}; `mediamill dlq redrive --id {letter.message_id}`"
        )
    if status == MediaStatus.FAILED.value:
        if item.get("error_retryable"):
            why = "with a retryable error (a redrive or a new event processes it again)"
        else:
            why = "for good (redelivered events are ignored; reprocess it to try again)"
        notes.append(f"FAILED {why}: {item.get('error')}")
    if status == MediaStatus.READY.value:
        stored = {o["key"] for o in found.objects}
        missing = [
            name
            for name, rendition in sorted((item.get("renditions") or {}).items())
            if rendition.get("key") not in stored
        ]
        if missing:
            notes.append(f"READY, but rendition(s) missing from S3: {', '.join(missing)}")
    if int(item.get("deaths") or 0):
        notes.append(f"{item['deaths']} try(s) died with their worker (memory, a decoder crash)")
    source = item.get("source") or {}
    if found.original is None and status != MediaStatus.PENDING_UPLOAD.value:
        notes.append("no original in S3: it was deleted, or never uploaded")
    elif (
        found.original is not None
        and source.get("etag")
        and (found.original["etag"] != source.get("etag"))
    ):
        notes.append(
            "the original in S3 is another object than the item's (a re-upload): its event is "
            "on its way, or was lost"
        )
    if item.get("event_pending"):
        notes.append("its media event is still owed: the sweep sends it after the grace")
    leftovers = [o for o in found.objects if o["belongs"].startswith("leftover")]
    if leftovers and status == MediaStatus.READY.value:
        notes.append(f"{len(leftovers)} object(s) of an earlier upload remain under its prefix")
    return notes


def _seconds_since(stamp: Any, now: float) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        return now - parse_iso(stamp).timestamp()
    except ValueError:
        return None


def inspection_json(found: Inspection) -> dict[str, Any]:
    item = found.item
    lease = item.get("lease") or {}
    left = lease_left(item, time.time())
    return {
        "media_id": found.media_id,
        "status": item.get("status"),
        "kind": item.get("kind"),
        "error": item.get("error"),
        "error_retryable": item.get("error_retryable"),
        "lease": {**lease, "seconds_left": round(left, 1), "held": left > 0} if lease else None,
        "stages": item.get("stages") or [],
        "original": found.original,
        "objects": found.objects,
        "queues": found.queues,
        "dead_letters": [letter_json(letter, {found.media_id: item}) for letter in found.letters],
        "stuck_after_seconds": found.stuck_after,
        "findings": found.findings,
        "item": item,
    }


def print_inspection(found: Inspection, *, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    item, now = found.item, time.time()
    out.write(
        f"media {found.media_id}: {item.get('status')}"
        f" ({item.get('kind') or 'kind not known yet'}), owner {item.get('owner', '-')}\n"
    )
    for note in found.findings:
        out.write(f"  - {note}\n")
    out.write("item (times UTC)\n")
    if item.get("error"):
        retry = "retryable" if item.get("error_retryable") else "final"
        out.write(f"  error ({retry}): {item['error']}\n")
    for label, name in (
        ("created", "created_at"),
        ("uploaded", "uploaded_at"),
        ("last claim", "processing_started_at"),
        ("processed", "processed_at"),
        ("updated", "updated_at"),
    ):
        out.write(f"  {label:<11}{moment(item.get(name))}\n")
    lease = item.get("lease") or {}
    left = lease_left(item, now)
    if not lease:
        held = "none"
    elif left > 0:
        held = f"held {span(left)} more, message {lease.get('message_id')}"
    else:
        expires = float(lease.get("expires") or now)
        held = f"lapsed {span(now - expires)} ago, message {lease.get('message_id')}"
    out.write(f"  {'lease':<11}{held}\n")
    out.write(
        f"  {'tries':<11}deliveries {item.get('receive_count', 0)}, "
        f"attempts {item.get('attempts', 0)}, deaths {item.get('deaths', 0)}\n"
    )
    owed = item.get("owed_since")
    pending = "yes" if item.get("event_pending") else "no"
    out.write(
        f"  {'owed':<11}{'since ' + moment(owed) if owed else 'nothing'}, event pending {pending}\n"
    )
    stages = [
        [
            str(s.get("name")),
            str(s.get("version")),
            f"{float(s.get('seconds') or 0):.3f}",
            str(s.get("outcome")),
            clip(s.get("detail"), 70),
        ]
        for s in item.get("stages") or []
    ]
    if stages:
        print_table("stages", ("stage", "version", "seconds", "outcome", "detail"), stages, out=out)
    else:
        out.write("stages: none recorded (they are written when the upload ends)\n")
    original = found.original
    if original is None:
        out.write("original: not in S3\n")
    else:
        out.write(
            f"original: s3://{original['bucket']}/{original['key']} {size(original['size'])}, "
            f"ETag {original['etag']}, modified {moment(original['last_modified'])}\n"
        )
    objects = [
        [o["key"], size(o["size"]), moment(o["last_modified"]), o["belongs"]] for o in found.objects
    ]
    if objects:
        tag = (item.get("source") or {}).get("tag") or "-"
        columns = ("key", "size", "modified", "belongs to")
        print_table(f"renditions (current tag {tag})", columns, objects, out=out)
    else:
        out.write("renditions: no object under its prefix\n")
    for queue in found.queues:
        out.write(
            f"{queue['queue']} queue: {queue['visible']} visible, {queue['in_flight']} in flight, "
            f"{queue['delayed']} delayed\n"
        )
    if not found.letters:
        out.write("dead-letter queues: no message for it\n")
