"""The event lock: one sender at a time for an item's owed event, and its release."""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from mediamill_core.items import encode as _encode
from mediamill_core.items import is_conditional_failure
from worker.table_writes import TableWrites


class EventLockWrites(TableWrites):
    """The writes of an item's event sender: take the lock, give it up, clear what is owed."""

    async def take_event_lock(
        self, media_id: str, processed_at: str, token: str
    ) -> dict[str, Any] | None:
        """Become the one sender of the item's owed event; None when someone else is."""
        now = time.time()
        try:
            return await self._update(
                media_id,
                sets={"event_lock": {"token": token, "until": now + self._event_lock_seconds}},
                condition=(
                    "event_pending = :true AND processed_at = :processed AND ("
                    "attribute_not_exists(event_lock) OR event_lock.#until < :now "
                    "OR event_lock.#token = :token)"
                ),
                names={"#until": "until", "#token": "token"},
                values={":true": True, ":processed": processed_at, ":now": now, ":token": token},
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return None
            raise

    async def release_event_lock(self, media_id: str, token: str) -> None:
        """A send that failed gives the lock up, so the sweep need not wait for it to lapse."""
        try:
            await self._ddb.update_item(
                TableName=self._table,
                Key=_encode({"media_id": media_id}),
                UpdateExpression="REMOVE event_lock",
                ConditionExpression="event_lock.#token = :token",
                ExpressionAttributeNames={"#token": "token"},
                ExpressionAttributeValues=_encode({":token": token}),
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise

    async def clear_event_pending(self, media_id: str, processed_at: str | None) -> None:
        """The owed event is on the topic: nothing is owed for this fact any more."""
        try:
            await self._ddb.update_item(
                TableName=self._table,
                Key=_encode({"media_id": media_id}),
                UpdateExpression="REMOVE event_pending, event_lock, owed_shard, owed_since",
                ConditionExpression="processed_at = :processed",
                ExpressionAttributeValues=_encode({":processed": processed_at}),
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
