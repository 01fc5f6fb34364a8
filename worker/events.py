"""Parse one SQS message body into the uploads it announces.

Accepted shapes, all as the body of one SQS message:

- an S3 event notification sent straight to SQS, or through SNS with raw delivery on:
  ``{"Records": [...]}``; each ``ObjectCreated:*`` record from ``aws:s3`` is one upload;
- the same inside an SNS envelope (raw delivery off): ``{"Type": "Notification",
  "Message": "<the S3 event as a JSON string>", ...}``;
- an EventBridge ``Object Created`` event from ``aws.s3``, delivered to SQS by a rule;
- the ``s3:TestEvent`` that S3 sends when a notification is configured (acknowledged, ignored).

Records and events that are well formed but announce no upload (``ObjectRemoved:*``, another
event source, an EventBridge ``Object Deleted``) come back with ``ignored`` saying why. Anything
else raises :class:`MalformedMessage`: the consumer logs and counts it and leaves the message
for the dead-letter queue, where a person can read it, rather than deleting what may be an
upload we failed to understand. A message is acknowledged as a whole, so one bad record sends
the whole message there.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

# SQS's message size limit (REFERENCE.md); anything larger did not come from SQS.
MAX_BODY_BYTES = 256 * 1024
# S3 object keys are at most 1024 bytes of UTF-8.
MAX_KEY_BYTES = 1024
_SNIPPET_CHARS = 200
# Legacy us-east-1 buckets allow upper case and '_' and up to 255 characters.
_BUCKET_NAME = r"^[A-Za-z0-9._-]{1,255}$"

# EventBridge "reason" → the S3 notification's eventName suffix, so that event_name means the
# same whichever route the upload arrived by. Unknown reasons are kept as they are.
_REASON_TO_EVENT = {
    "PutObject": "Put",
    "POST Object": "Post",
    "CopyObject": "Copy",
    "CompleteMultipartUpload": "CompleteMultipartUpload",
}


class MalformedMessage(ValueError):
    """The body is not an upload event we understand: logged, counted, left for the DLQ."""


# Wider than any sequencer S3 sends (16 to 18 hex digits today).
_SEQUENCER_WIDTH = 64
_HEX = re.compile(r"^[0-9A-Fa-f]{1,64}$")


def sequencer_order(sequencer: str | None) -> str | None:
    """The sequencer in a form that compares as text, or None when there is none to trust.

    S3 documents sequencers of one key as hexadecimal strings of varying length, compared after
    right-padding the shorter with zeros; padding every one to a fixed width makes a plain
    string comparison (DynamoDB's included) give the same order.
    """
    if sequencer is None or not _HEX.fullmatch(sequencer):
        return None
    return sequencer.upper().ljust(_SEQUENCER_WIDTH, "0")


@dataclass(frozen=True, slots=True)
class UploadEvent:
    """One object created in a bucket, with its key decoded to the real S3 key."""

    bucket: str
    key: str
    size: int
    etag: str
    version_id: str | None
    sequencer: str | None
    event_name: str
    event_time: datetime | None

    @property
    def order(self) -> str | None:
        """Where this object stands among the uploads of its key (None: unknown)."""
        return sequencer_order(self.sequencer)


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """The uploads one message announces; ``ignored`` says why there is nothing to do."""

    uploads: tuple[UploadEvent, ...]
    ignored: str | None = None


# --- wire models: unknown fields are ignored, the fields we use are validated ---------------


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Bucket(_Wire):
    name: StrictStr = Field(pattern=_BUCKET_NAME)


class _RecordObject(_Wire):
    key: StrictStr
    size: StrictInt = Field(ge=0)
    etag: StrictStr = Field(alias="eTag")
    version_id: StrictStr | None = Field(default=None, alias="versionId")
    sequencer: StrictStr | None = None


class _RecordS3(_Wire):
    bucket: _Bucket
    obj: _RecordObject = Field(alias="object")


class _RecordHeader(_Wire):
    """Enough of a record to decide whether it announces an upload."""

    event_source: StrictStr = Field(alias="eventSource")
    event_name: StrictStr = Field(alias="eventName")


class _Record(_RecordHeader):
    # Validated by hand: a bad timestamp must not cost us the upload.
    event_time: Any = Field(default=None, alias="eventTime")
    s3: _RecordS3


class _Notification(_Wire):
    records: list[dict[str, Any]] = Field(alias="Records")


class _SnsEnvelope(_Wire):
    type: Literal["Notification"] = Field(alias="Type")
    message: StrictStr = Field(alias="Message")


class _TestEvent(_Wire):
    service: Literal["Amazon S3"] = Field(alias="Service")
    event: Literal["s3:TestEvent"] = Field(alias="Event")


class _EventBridgeHeader(_Wire):
    source: Literal["aws.s3"]
    detail_type: StrictStr = Field(alias="detail-type")


class _EventBridgeObject(_Wire):
    key: StrictStr
    size: StrictInt = Field(ge=0)
    etag: StrictStr
    version_id: StrictStr | None = Field(default=None, alias="version-id")
    sequencer: StrictStr | None = None


class _EventBridgeDetail(_Wire):
    bucket: _Bucket
    obj: _EventBridgeObject = Field(alias="object")
    reason: StrictStr | None = None


class _EventBridgeEvent(_EventBridgeHeader):
    time: Any = None
    detail: _EventBridgeDetail


# --- parsing ---------------------------------------------------------------------------------


def parse_message(body: str) -> ParsedMessage:
    """The uploads announced by one SQS message body; raises MalformedMessage for anything else."""
    # Cheap character count first: encoding a huge string only to refuse it is wasted work.
    if len(body) > MAX_BODY_BYTES or len(body.encode("utf-8", "surrogatepass")) > MAX_BODY_BYTES:
        raise MalformedMessage(f"body is larger than the {MAX_BODY_BYTES // 1024} KiB SQS allows")
    if not body.strip():
        raise MalformedMessage("body is empty" if not body else "body is only whitespace")
    document = _load_object(body, what="body")
    return _parse_document(document, inside_sns=False)


def _parse_document(document: dict[str, Any], *, inside_sns: bool) -> ParsedMessage:
    if "Records" in document:
        return _parse_notification(document)
    if "Type" in document and not inside_sns:
        envelope = _validate(_SnsEnvelope, document, "SNS envelope")
        inner = _load_object(envelope.message, what="SNS Message")
        return _parse_document(inner, inside_sns=True)
    if "detail-type" in document:
        return _parse_eventbridge(document)
    if "Event" in document:
        _validate(_TestEvent, document, "S3 test event")
        return ParsedMessage(uploads=(), ignored="s3:TestEvent")
    where = "SNS Message" if inside_sns else "body"
    keys = ", ".join(sorted(str(k) for k in document)) or "none"
    raise MalformedMessage(
        f"{where} is not an S3 event, SNS notification, EventBridge event or s3:TestEvent"
        f" (top-level keys: {_snippet(keys)})"
    )


def _parse_notification(document: dict[str, Any]) -> ParsedMessage:
    notification = _validate(_Notification, document, "S3 notification")
    if not notification.records:
        raise MalformedMessage("S3 notification has an empty Records list")
    uploads: list[UploadEvent] = []
    skipped: list[str] = []
    for index, raw in enumerate(notification.records):
        where = f"record {index}"
        header = _validate(_RecordHeader, raw, where)
        if header.event_source != "aws:s3" or not _is_object_created(header.event_name):
            label = header.event_name
            if header.event_source != "aws:s3":
                label = f"{header.event_source} {label}"
            if label not in skipped:
                skipped.append(label)
            continue
        record = _validate(_Record, raw, where)
        obj = record.s3.obj
        uploads.append(
            UploadEvent(
                bucket=record.s3.bucket.name,
                key=_checked_key(obj.key, url_encoded=True, where=where),
                size=obj.size,
                etag=obj.etag.strip('"'),
                version_id=obj.version_id,
                sequencer=obj.sequencer,
                event_name=record.event_name,
                event_time=_parse_time(record.event_time),
            )
        )
    if uploads:
        return ParsedMessage(uploads=tuple(uploads))
    return ParsedMessage(
        uploads=(), ignored=_truncate(f"no ObjectCreated records: {', '.join(skipped)}")
    )


def _parse_eventbridge(document: dict[str, Any]) -> ParsedMessage:
    header = _validate(_EventBridgeHeader, document, "EventBridge event")
    if header.detail_type != "Object Created":
        return ParsedMessage(uploads=(), ignored=_truncate(f"EventBridge {header.detail_type}"))
    event = _validate(_EventBridgeEvent, document, "EventBridge event")
    detail = event.detail
    reason = detail.reason
    event_name = (
        f"ObjectCreated:{_REASON_TO_EVENT.get(reason, reason)}" if reason else "ObjectCreated"
    )
    # Key encoding: the S3 user guide's "Event message structure" page (notification-content-
    # structure.html) states that the notification's object key "is URL encoded", e.g. "red
    # flower.jpg" becomes "red+flower.jpg". Its "EventBridge event message structure" page
    # (ev-events.html) says no such thing for detail.object.key and shows only "example-key",
    # which reads the same either way; moto 5.2 (s3/notifications.py) quote_plus-es the key for
    # SQS/SNS/Lambda but sends key.name as is to EventBridge. So the EventBridge key is taken
    # verbatim: decoding it would corrupt keys holding "+" or "%".
    return ParsedMessage(
        uploads=(
            UploadEvent(
                bucket=detail.bucket.name,
                key=_checked_key(detail.obj.key, url_encoded=False, where="EventBridge event"),
                size=detail.obj.size,
                etag=detail.obj.etag.strip('"'),
                version_id=detail.obj.version_id,
                sequencer=detail.obj.sequencer,
                event_name=event_name,
                event_time=_parse_time(event.time),
            ),
        )
    )


def _is_object_created(event_name: str) -> bool:
    return event_name.partition(":")[0] == "ObjectCreated"


def _load_object(text: str, *, what: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedMessage(
            f"{what} is not JSON ({exc.msg} at char {exc.pos}): {_snippet(text)}"
        ) from None
    except ValueError:  # an integer longer than Python's int/str conversion limit
        raise MalformedMessage(f"{what} holds a number with too many digits") from None
    except RecursionError:
        raise MalformedMessage(f"{what} is JSON nested too deeply to parse") from None
    if not isinstance(document, dict):
        raise MalformedMessage(f"{what} is a JSON {_json_type(document)}, not an object")
    return document


_M = TypeVar("_M", bound=_Wire)


def _validate(model: type[_M], data: Any, where: str) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        first = errors[0]
        location = ".".join(str(part) for part in first["loc"])
        reason = f"{location}: {first['msg']}" if location else first["msg"]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise MalformedMessage(_truncate(f"{where}: {reason}") + more) from None


def _checked_key(raw: str, *, url_encoded: bool, where: str) -> str:
    """The real S3 key: decoded when the event URL-encodes it, refused when no key could be it."""
    try:
        key = unquote_plus(raw, errors="strict") if url_encoded else raw
        size = len(key.encode("utf-8"))
    except UnicodeError:
        raise MalformedMessage(f"{where}: object key {_snippet(raw)} is not UTF-8") from None
    if not key:
        raise MalformedMessage(f"{where}: object key is empty")
    if "\x00" in key:
        raise MalformedMessage(f"{where}: object key {_snippet(raw)} contains NUL")
    if size > MAX_KEY_BYTES:
        raise MalformedMessage(f"{where}: object key is {size} bytes, over S3's {MAX_KEY_BYTES}")
    return key


def _parse_time(value: Any) -> datetime | None:
    """An aware UTC datetime, or None: a missing or bad timestamp does not fail an upload."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _truncate(text: str) -> str:
    return text if len(text) <= _SNIPPET_CHARS else text[: _SNIPPET_CHARS - 1] + "…"


def _snippet(text: str) -> str:
    """A quoted, shortened excerpt of untrusted text, safe to put in a log line."""
    return repr(_truncate(text))
