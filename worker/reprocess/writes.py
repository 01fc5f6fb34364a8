"""The media table writes of a reprocess: its lease on a READY item, and the merge.

A reprocess never moves the item out of READY: the owner keeps seeing it as it was, and the
API's rules for READY items hold throughout. It takes a lease of its own (``reprocess_lease``)
on the item for the very object and revision it read, so that a second request cannot run
beside it; a re-upload's claim does not wait for it (the newest object wins, as always) and
clears it with everything else derived from the old object. The merge is conditional on the
same object, revision and lease: a re-upload or a delete that came meanwhile makes it fail,
and the reprocess drops its results.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from mediamill_core.items import MediaStatus, is_conditional_failure, iso
from mediamill_core.items import encode as _encode
from mediamill_core.reprocess import ReprocessRequest
from worker.store import StaleJob, owed_shard
from worker.table_writes import TableWrites

LEASE = "reprocess_lease"


@dataclass(frozen=True, slots=True)
class ReprocessLease:
    """Who runs a reprocess on an item: a token per try, its message and its request."""

    token: str
    message_id: str
    request: ReprocessRequest
    seconds: float

    def as_item(self, now: float) -> dict[str, Any]:
        return {
            "token": self.token,
            "message_id": self.message_id,
            "request_id": self.request.request_id,
            "stage": self.request.stage,
            "mode": self.request.mode,
            "requested_at": iso(self.request.requested_at),
            "expires": now + self.seconds,
        }


def lease_of(item: dict[str, Any]) -> dict[str, Any] | None:
    lease = item.get(LEASE)
    return lease if isinstance(lease, dict) else None


def lease_seconds_left(item: dict[str, Any], now: float) -> float:
    expires = (lease_of(item) or {}).get("expires")
    return max(0.0, float(expires) - now) if isinstance(expires, int | float) else 0.0


def _object_condition(item: dict[str, Any]) -> tuple[str, dict[str, str], dict[str, Any]]:
    """READY, for the object and revision read: nothing has moved since."""
    rev = item.get("rev")
    condition = "#status = :ready AND #source.#tag = :tag AND " + (
        "#rev = :rev" if rev is not None else "attribute_not_exists(#rev)"
    )
    names = {"#status": "status", "#source": "source", "#tag": "tag", "#rev": "rev"}
    values: dict[str, Any] = {
        ":ready": MediaStatus.READY.value,
        ":tag": (item.get("source") or {}).get("tag"),
    }
    if rev is not None:
        values[":rev"] = rev
    return condition, names, values


class ReprocessWrites(TableWrites):
    """Conditional writes of reprocess jobs, through an aiobotocore DynamoDB client."""

    async def take_lease(
        self, item: dict[str, Any], lease: ReprocessLease
    ) -> dict[str, Any] | None:
        """Lease the item as read (free, lapsed or ours already); None when it changed or
        someone holds it: read it again and decide again."""
        now = time.time()
        condition, names, values = _object_condition(item)
        condition += (
            " AND attribute_not_exists(event_pending) AND (attribute_not_exists(#lease)"
            " OR #lease.#expires < :now OR #lease.#token = :token)"
        )
        names.update({"#lease": LEASE, "#expires": "expires", "#token": "token"})
        values.update({":now": now, ":token": lease.token})
        try:
            return await self._update(
                item["media_id"],
                sets={LEASE: lease.as_item(now)},
                condition=condition,
                names=names,
                values=values,
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return None
            raise

    async def renew_lease(self, media_id: str, lease: ReprocessLease) -> bool:
        """Extend our lease; False when it is no longer ours (the item moved on)."""
        try:
            await self._update(
                media_id,
                sets={LEASE: lease.as_item(time.time())},
                condition="#lease.#token = :token AND #status = :ready",
                names={"#lease": LEASE, "#token": "token", "#status": "status"},
                values={":token": lease.token, ":ready": MediaStatus.READY.value},
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    async def release_lease(self, media_id: str, lease: ReprocessLease) -> None:
        """Give the lease up, so the next request for the item need not wait for it."""
        try:
            await self._ddb.update_item(
                TableName=self._table,
                Key=_encode({"media_id": media_id}),
                UpdateExpression="REMOVE #lease",
                ConditionExpression="#lease.#token = :token",
                ExpressionAttributeNames={"#lease": LEASE, "#token": "token"},
                ExpressionAttributeValues=_encode({":token": lease.token}),
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise

    async def merge(
        self,
        item: dict[str, Any],
        lease: ReprocessLease,
        sets: dict[str, Any],
        *,
        stamp: str,
        event_token: str | None,
    ) -> dict[str, Any]:
        """Write what the stages made into the item as read, under our lease (kept: it is
        given up once the renditions it replaced are removed). ``event_token`` makes the item
        owe a media.processed event, sent by the caller or, failing that, by the sweep.

        Raises StaleJob when the item moved on (re-uploaded, deleted, or leased by another).
        """
        media_id = item["media_id"]
        updates = {**sets, "updated_at": stamp, "reprocessed_at": stamp}
        if event_token is not None:
            updates.update(
                event_pending=True,
                event_lock={"token": event_token, "until": time.time() + self._event_lock_seconds},
                owed_shard=owed_shard(media_id),
                owed_since=stamp,
            )
        condition, names, values = _object_condition(item)
        condition += " AND #lease.#token = :token AND attribute_not_exists(event_pending)"
        names.update({"#lease": LEASE, "#token": "token"})
        values.update({":token": lease.token})
        try:
            return await self._update(
                media_id,
                sets=updates,
                counters=("rev",),
                condition=condition,
                names=names,
                values=values,
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
        current = await self.get(media_id)
        if (
            current is not None
            and (lease_of(current) or {}).get("token") == lease.token
            and current.get("reprocessed_at") == stamp
            and current.get("status") == MediaStatus.READY.value
            and (current.get("source") or {}).get("tag") == (item.get("source") or {}).get("tag")
        ):
            # Our own merge, whose answer was lost and whose retry then failed its condition.
            return current
        raise StaleJob(f"item {media_id} moved on while it was reprocessed")
