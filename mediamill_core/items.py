"""The media item in DynamoDB: statuses, index names and value conversion.

Shared by the worker and the API Lambda, so it imports nothing heavy.
"""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

OWNER_INDEX = "by-owner"  # HASH owner, RANGE created_at: a user's media, newest first
# Sparse: HASH owed_shard, RANGE owed_since, on items that still owe a finish or an event.
OWED_INDEX = "owed"
# What the owed index carries besides its keys: enough for the sweep to pass over the rest.
OWED_PROJECTION = ("status", "lease", "receive_count", "deaths", "event_pending")
# Keys of the table's few records that are not media (the worker's check leases): a media id is
# 32 hex digits, so no media id starts with it. Whatever scans the table passes these over.
RESERVED_KEY_PREFIX = "#"


class MediaStatus(enum.StrEnum):
    PENDING_UPLOAD = "PENDING_UPLOAD"
    PROCESSING = "PROCESSING"
    READY = "READY"
    FAILED = "FAILED"
    # DELETE /media/{id} is removing it: the worker may no longer claim or finish it.
    DELETING = "DELETING"


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds: sorts as text, so it can be a range key."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """The moment ``iso`` wrote (any ISO 8601 time); ValueError for anything else."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def encode(values: dict[str, Any]) -> dict[str, Any]:
    """Plain attribute values to DynamoDB's wire form (floats via Decimal)."""
    return {name: _serializer.serialize(to_dynamo(value)) for name, value in values.items()}


def decode(item: dict[str, Any]) -> dict[str, Any]:
    """An item in DynamoDB's wire form back to plain JSON types."""
    result: dict[str, Any] = from_dynamo(
        {name: _deserializer.deserialize(value) for name, value in item.items()}
    )
    return result


def to_dynamo(value: Any) -> Any:
    """Plain JSON-like data to what boto3's serializer accepts (floats become Decimal)."""
    return json.loads(json.dumps(value, default=str), parse_float=Decimal)


def from_dynamo(value: Any) -> Any:
    """Deserialized DynamoDB data back to plain JSON types (Decimal to int or float)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: from_dynamo(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [from_dynamo(item) for item in value]
    if isinstance(value, set):
        return sorted(from_dynamo(item) for item in value)
    return value


def is_conditional_failure(exc: ClientError) -> bool:
    """A DynamoDB write whose condition did not hold (the item is not what the writer expected)."""
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
