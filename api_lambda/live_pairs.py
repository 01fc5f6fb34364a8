"""A deleted half of a Live Photo leaves the other whole (see mediamill_core.live).

The deletion has marked the item DELETING before this runs, so no pairing can start after it
(a pairing is conditioned on both halves being READY); one made before shows in the item as
marked. The other half is unlinked (the still loses the clip's ``motion`` rendition, the clip
is listed again) and the link record forgets the deleted half, so a new upload of it pairs
again. Every write is conditioned on the link it undoes: a retried DELETE repeats none twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from mediamill_core.items import encode, is_conditional_failure, iso, utc_now
from mediamill_core.live import (
    HALVES,
    LINK_FIELD,
    UNLINK,
    UNLINK_NAMES,
    Half,
    half_of,
    link_key,
    other,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class LivePairs:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._ddb = dynamodb
        self._table = table

    def unlink(self, item: dict[str, Any]) -> None:
        """Undo whatever pairs ``item`` (being deleted) with another item."""
        media_id = item["media_id"]
        for half in HALVES:  # the other half is unlinked: the one whose id this item holds
            partner = item.get(LINK_FIELD[other(half)])
            if partner:
                self._unlink(str(partner), half, media_id)
        identifier = (item.get("metadata") or {}).get("content_identifier")
        own = half_of(item.get("kind"))
        if identifier and own and item.get("owner"):
            self._forget(link_key(str(item["owner"]), str(identifier)), own, media_id)

    def _unlink(self, media_id: str, half: Half, linked: str) -> None:
        names = UNLINK_NAMES[half]
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=encode({"media_id": media_id}),
                UpdateExpression=UNLINK[half] + " SET updated_at = :now",
                ConditionExpression="#link = :linked",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=encode({":linked": linked, ":now": iso(utc_now())}),
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise  # the DELETE fails and is retried, repeating only what is left

    def _forget(self, key: str, half: str, media_id: str) -> None:
        try:
            answer = self._ddb.update_item(
                TableName=self._table,
                Key=encode({"media_id": key}),
                UpdateExpression="REMOVE #half",
                ConditionExpression="#half = :me",
                ExpressionAttributeNames={"#half": half},
                ExpressionAttributeValues=encode({":me": media_id}),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return
            raise
        if not {"photo", "video"} & set(answer.get("Attributes", {})):
            try:  # neither half left: the record goes, unless one registered meanwhile
                self._ddb.delete_item(
                    TableName=self._table,
                    Key=encode({"media_id": key}),
                    ConditionExpression=(
                        "attribute_not_exists(photo) AND attribute_not_exists(video)"
                    ),
                )
            except ClientError as exc:
                if not is_conditional_failure(exc):
                    raise
