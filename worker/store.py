"""The worker's writes to the media table: claim, READY, FAILED, all conditional.

Conditions on status and source ETag make every write idempotent under SQS's at-least-once
delivery: a second delivery of a finished upload finds nothing to do, and a job still running
for a deleted item cannot bring it back.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from worker.items import MediaStatus, iso, utc_now
from worker.items import decode as _decode
from worker.items import encode as _encode


class StaleJob(Exception):
    """The item moved on (finished by another delivery, re-uploaded or deleted) while we ran."""


class ClaimOutcome(enum.Enum):
    CLAIMED = "claimed"
    DUPLICATE = "duplicate"  # already finished for this very upload
    MISSING = "missing"  # no item: deleted, or the object was not made through the API


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: ClaimOutcome
    item: dict[str, Any] | None


def is_conditional_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class MediaStore:
    """Conditional writes to the media table through an aiobotocore DynamoDB client."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self._ddb = dynamodb
        self._table = table

    async def get(self, media_id: str) -> dict[str, Any] | None:
        response = await self._ddb.get_item(
            TableName=self._table, Key=_encode({"media_id": media_id}), ConsistentRead=True
        )
        item = response.get("Item")
        return _decode(item) if item else None

    async def claim(
        self,
        media_id: str,
        *,
        etag: str,
        size: int,
        version_id: str | None,
        uploaded_at: datetime | None,
    ) -> Claim:
        """Move the item to PROCESSING for this upload, unless it is finished, deleting or gone.

        A PROCESSING item with the same ETag is claimed again: its worker died or gave the message
        back; FAILED is claimed again only when the failure was not the media's fault.
        """
        now = iso(utc_now())
        values = {
            ":processing": MediaStatus.PROCESSING.value,
            ":pending": MediaStatus.PENDING_UPLOAD.value,
            ":failed": MediaStatus.FAILED.value,
            ":deleting": MediaStatus.DELETING.value,
            ":etag": etag,
            ":size": size,
            ":version": version_id,
            ":now": now,
            ":uploaded": iso(uploaded_at) if uploaded_at else now,
            ":true": True,
            ":one": 1,
            ":zero": 0,
        }
        try:
            response = await self._ddb.update_item(
                TableName=self._table,
                Key=_encode({"media_id": media_id}),
                # upload_expires_at is the table's TTL: with its bytes in, the item must stay.
                UpdateExpression=(
                    "SET #status = :processing, #source.#etag = :etag, #source.#size = :size, "
                    "#source.#version = :version, updated_at = :now, processing_started_at = :now,"
                    " uploaded_at = :uploaded, attempts = if_not_exists(attempts, :zero) + :one "
                    "REMOVE #error, error_retryable, upload_expires_at"
                ),
                # A DELETING item is on its way out: another ETag must not revive it.
                ConditionExpression=(
                    "attribute_exists(media_id) AND #status <> :deleting AND ("
                    "#status IN (:pending, :processing) "
                    "OR attribute_not_exists(#source.#etag) OR #source.#etag <> :etag "
                    "OR (#status = :failed AND error_retryable = :true))"
                ),
                ExpressionAttributeNames={
                    "#status": "status",
                    "#source": "source",
                    "#etag": "etag",
                    "#size": "size",
                    "#version": "version_id",
                    "#error": "error",
                },
                ExpressionAttributeValues=_encode(values),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
            item = await self.get(media_id)
            if item is None:
                return Claim(ClaimOutcome.MISSING, None)
            return Claim(ClaimOutcome.DUPLICATE, item)
        return Claim(ClaimOutcome.CLAIMED, _decode(response["Attributes"]))

    async def _finish(self, media_id: str, etag: str, updates: dict[str, Any]) -> dict[str, Any]:
        names = {"#status": "status", "#source": "source", "#etag": "etag"}
        values = {":processing": MediaStatus.PROCESSING.value, ":etag": etag}
        assignments = []
        for index, (name, value) in enumerate(updates.items()):
            names[f"#f{index}"] = name
            values[f":v{index}"] = value
            assignments.append(f"#f{index} = :v{index}")
        try:
            response = await self._ddb.update_item(
                TableName=self._table,
                Key=_encode({"media_id": media_id}),
                UpdateExpression="SET " + ", ".join(assignments),
                ConditionExpression="#status = :processing AND #source.#etag = :etag",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=_encode(values),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                raise StaleJob(f"item {media_id} is no longer processing this upload") from None
            raise
        return _decode(response["Attributes"])

    async def mark_ready(
        self,
        media_id: str,
        etag: str,
        *,
        kind: str | None,
        metadata: dict[str, Any],
        location: dict[str, Any] | None,
        renditions: dict[str, dict[str, Any]],
        stages: list[dict[str, Any]],
        warnings: list[str],
    ) -> dict[str, Any]:
        now = iso(utc_now())
        updates: dict[str, Any] = {
            "status": MediaStatus.READY.value,
            "kind": kind,
            "metadata": metadata,
            "renditions": renditions,
            "stages": stages,
            "warnings": warnings,
            "updated_at": now,
            "processed_at": now,
            # Cleared once media.processed is on the topic; a redelivery re-sends it if not.
            "event_pending": True,
        }
        if location is not None:
            updates["location"] = location
        return await self._finish(media_id, etag, updates)

    async def mark_failed(
        self,
        media_id: str,
        etag: str,
        *,
        reason: str,
        retryable: bool,
        kind: str | None,
        stages: list[dict[str, Any]],
        warnings: list[str],
    ) -> dict[str, Any]:
        now = iso(utc_now())
        return await self._finish(
            media_id,
            etag,
            {
                "status": MediaStatus.FAILED.value,
                "error": reason,
                "error_retryable": retryable,
                "kind": kind,
                "stages": stages,
                "warnings": warnings,
                "updated_at": now,
                "processed_at": now,
                "event_pending": True,
            },
        )

    async def is_gone(self, media_id: str) -> bool:
        """Deleted, or being deleted: what a job made for it belongs to nobody."""
        item = await self.get(media_id)
        return item is None or item.get("status") == MediaStatus.DELETING.value

    async def clear_event_pending(self, media_id: str) -> None:
        try:
            await self._ddb.update_item(
                TableName=self._table,
                Key=_encode({"media_id": media_id}),
                UpdateExpression="REMOVE event_pending",
                ConditionExpression="attribute_exists(media_id)",
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
