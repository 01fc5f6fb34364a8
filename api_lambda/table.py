"""The API's reads and writes of the media table; every one scoped to the calling owner."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from api_lambda.errors import NotFound
from api_lambda.pending import is_expired
from mediamill_core.items import (
    OWNER_INDEX,
    MediaStatus,
    decode,
    encode,
    is_conditional_failure,
    iso,
    utc_now,
)
from mediamill_core.keys import is_media_id
from mediamill_core.live import COMPANION_OF

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# One answer for "not yours", "no such id", "not an id" and "being deleted": a caller learns
# nothing about anyone else's media.
NO_SUCH_MEDIA = "no such media"
# The attributes of a by-owner index position: the table key plus the index key.
INDEX_KEY = ("media_id", "owner", "created_at")
# An expired upload (see api_lambda.pending) is as good as gone, TTL sweep or not. Items from
# before the TTL hold the expiry as text, which the TTL ignores: so does the type check.
_NOT_EXPIRED = (
    "NOT (#status = :pending AND attribute_type(upload_expires_at, :number)"
    " AND upload_expires_at <= :epoch)"
)


class MediaTable:
    """Sync DynamoDB access for the routes; a condition on the owner guards every write."""

    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._ddb = dynamodb
        self._table = table

    def create(self, item: dict[str, Any]) -> None:
        self._ddb.put_item(
            TableName=self._table,
            Item=encode(item),
            ConditionExpression="attribute_not_exists(media_id)",
        )

    def owned(self, media_id: str, caller: str) -> dict[str, Any]:
        """The caller's item, or NotFound (also for one being deleted or expired)."""
        if not is_media_id(media_id):
            raise NotFound(NO_SUCH_MEDIA)
        answer = self._ddb.get_item(TableName=self._table, Key=_key(media_id), ConsistentRead=True)
        stored = answer.get("Item")
        item = decode(stored) if stored else None
        if (
            item is None
            or item.get("owner") != caller
            or item.get("status") == MediaStatus.DELETING.value
            or is_expired(item, utc_now())
        ):
            raise NotFound(NO_SUCH_MEDIA)
        return item

    def edit(self, media_id: str, caller: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Set each change (None removes the attribute); NotFound unless the caller's and live."""
        now = utc_now()
        names = {"#owner": "owner", "#status": "status"}
        values: dict[str, Any] = {
            ":caller": caller,
            ":deleting": MediaStatus.DELETING.value,
            ":now": iso(now),
            **_expiry_values(now),
        }
        sets, removes = ["updated_at = :now"], []
        for index, (name, value) in enumerate(sorted(changes.items())):
            names[f"#f{index}"] = name
            if value is None:
                removes.append(f"#f{index}")
            else:
                values[f":v{index}"] = value
                sets.append(f"#f{index} = :v{index}")
        update = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        return self._update_owned(
            media_id,
            UpdateExpression=update,
            ConditionExpression=f"#owner = :caller AND #status <> :deleting AND {_NOT_EXPIRED}",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=encode(values),
        )

    def begin_delete(self, media_id: str, caller: str) -> dict[str, Any]:
        """Mark the caller's item DELETING (again, on a retry) so no job can finish it."""
        return self._update_owned(
            media_id,
            UpdateExpression="SET #status = :deleting, updated_at = :now REMOVE event_pending",
            ConditionExpression="#owner = :caller",
            ExpressionAttributeNames={"#owner": "owner", "#status": "status"},
            ExpressionAttributeValues=encode(
                {
                    ":caller": caller,
                    ":deleting": MediaStatus.DELETING.value,
                    ":now": iso(utc_now()),
                }
            ),
        )

    def delete(self, media_id: str) -> None:
        self._ddb.delete_item(TableName=self._table, Key=_key(media_id))

    def end_multipart(self, media_id: str, upload_id: str, *, delete: bool) -> dict[str, Any]:
        """Forget the multipart upload (completed), or delete the item (aborted).

        Completed, the bytes are in: the item no longer expires, however long the worker takes.
        Conditional on this very upload, so a concurrent complete and abort cannot both win.
        """
        condition: dict[str, Any] = {
            "ConditionExpression": "multipart.upload_id = :upload",
            "ExpressionAttributeValues": encode({":upload": upload_id}),
        }
        try:
            if delete:
                self._ddb.delete_item(TableName=self._table, Key=_key(media_id), **condition)
                return {}
            answer = self._ddb.update_item(
                TableName=self._table,
                Key=_key(media_id),
                UpdateExpression="REMOVE multipart, upload_expires_at",
                ReturnValues="ALL_NEW",
                **condition,
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                raise NotFound(NO_SUCH_MEDIA) from None
            raise
        return decode(answer["Attributes"])

    def owner_page(
        self,
        owner: str,
        *,
        limit: int,
        start: dict[str, Any] | None,
        filters: Mapping[str, str],
        hide_companions: bool = False,
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """One Query of the by-owner index, newest first: (matching items, last key read).

        ``filters`` are exact matches; items being deleted or expired never show, nor, with
        ``hide_companions``, the clips of Live Photos.
        """
        names = {"#owner": "owner", "#status": "status"}
        values: dict[str, Any] = {
            ":owner": owner,
            ":deleting": MediaStatus.DELETING.value,
            **_expiry_values(utc_now()),
        }
        conditions = ["#status <> :deleting", _NOT_EXPIRED]
        for index, (name, value) in enumerate(sorted(filters.items())):
            names[f"#f{index}"] = name
            values[f":f{index}"] = value
            conditions.append(f"#f{index} = :f{index}")
        if hide_companions:
            names["#companion"] = COMPANION_OF
            conditions.append("attribute_not_exists(#companion)")
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": OWNER_INDEX,
            "KeyConditionExpression": "#owner = :owner",
            "FilterExpression": " AND ".join(conditions),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": encode(values),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if start is not None:
            request["ExclusiveStartKey"] = encode(start)
        answer = self._ddb.query(**request)
        last = answer.get("LastEvaluatedKey")
        return [decode(item) for item in answer.get("Items", [])], decode(last) if last else None

    def open_uploads(
        self, owner: str, *, created_since: datetime, open_after: int
    ) -> list[dict[str, Any]]:
        """The owner's pending items whose upload URLs are still valid: ``size`` and
        ``upload_expires_at`` only.

        One Query of the by-owner index (paged), its key bounded to items created since
        ``created_since``: the read grows with the owner's recent uploads, not their library.
        """
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": OWNER_INDEX,
            "KeyConditionExpression": "#owner = :owner AND created_at >= :since",
            "FilterExpression": (
                "#status = :pending AND attribute_type(upload_expires_at, :number)"
                " AND upload_expires_at > :open_after"
            ),
            "ProjectionExpression": "#size, upload_expires_at",
            "ExpressionAttributeNames": {"#owner": "owner", "#status": "status", "#size": "size"},
            "ExpressionAttributeValues": encode(
                {
                    ":owner": owner,
                    ":since": iso(created_since),
                    ":pending": MediaStatus.PENDING_UPLOAD.value,
                    ":number": "N",
                    ":open_after": open_after,
                }
            ),
        }
        found: list[dict[str, Any]] = []
        while True:
            answer = self._ddb.query(**request)
            found.extend(decode(item) for item in answer.get("Items", []))
            last = answer.get("LastEvaluatedKey")
            if not last:
                return found
            request["ExclusiveStartKey"] = last

    def _update_owned(self, media_id: str, **update: Any) -> dict[str, Any]:
        if not is_media_id(media_id):
            raise NotFound(NO_SUCH_MEDIA)
        try:
            answer = self._ddb.update_item(
                TableName=self._table, Key=_key(media_id), ReturnValues="ALL_NEW", **update
            )
        except ClientError as exc:
            # The condition names the owner, so a missing item fails it too.
            if is_conditional_failure(exc):
                raise NotFound(NO_SUCH_MEDIA) from None
            raise
        return decode(answer["Attributes"])


def _expiry_values(now: datetime) -> dict[str, Any]:
    """The values ``_NOT_EXPIRED`` names."""
    return {
        ":pending": MediaStatus.PENDING_UPLOAD.value,
        ":number": "N",
        ":epoch": int(now.timestamp()),
    }


def _key(media_id: str) -> dict[str, Any]:
    return {"media_id": {"S": media_id}}
