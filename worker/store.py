"""The worker's writes to the media table: claim, READY, FAILED, all conditional.

Several objects may be uploaded under one media id (a presigned POST can be used again until it
expires) and S3 announces them late, twice, or out of order. The item records which object it
is for (``source.tag``, with S3's sequencer to order them) and a short lease held by the job
working on it. A claim for an older object is refused; a claim for a newer one takes the item
over and clears everything derived from the old one; a second delivery of the object being
worked on waits for the lease. Every write is conditional, and a write whose answer was lost
(botocore retries it, and the retry fails its own condition) is recognised when it meets itself.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from mediamill_core.items import MediaStatus, is_conditional_failure, iso, utc_now
from mediamill_core.items import encode as _encode
from worker.claims import (
    Claim,
    ClaimContended,
    ClaimOutcome,
    Decision,
    Lease,
    StoredObject,
    decide,
    died,
    lease_left,
    sent_on,
)
from worker.event_lock import EventLockWrites

# Sparse index of items that still owe something (a finish, or an event): see worker.sweep.
OWED_SHARDS = 8
# What a new object clears: everything the previous one's processing produced.
DERIVED = (
    "metadata",
    "location",
    "renditions",
    "stages",
    "warnings",
    "kind",
    "error",
    "error_retryable",
    "processed_at",
    "event_pending",
    "event_lock",
    # A reprocess of the old object (worker/reprocess/): its lease, and when it last merged.
    "reprocess_lease",
    "reprocessed_at",
)
# upload_expires_at is the table's TTL for abandoned uploads: with its bytes in, the item stays.
_CLAIM_REMOVES = (*DERIVED, "upload_expires_at")
_CLAIM_ROUNDS = 4
# Set by the first claim of a fresh upload and removed by every other claim: while it is there,
# the item has held no other object, so no renditions of another lie under its media id and
# publish need not list them (one S3 LIST, the dearest request class, per upload).
SOLE_OBJECT = "sole_object"


class StaleJob(Exception):
    """The item moved on (finished by another delivery, re-uploaded or deleted) while we ran."""


def owed_shard(media_id: str) -> str:
    return str(zlib.crc32(media_id.encode()) % OWED_SHARDS)


class MediaStore(EventLockWrites):
    """Conditional writes to the media table through an aiobotocore DynamoDB client."""

    async def claim(
        self,
        media_id: str,
        obj: StoredObject,
        lease: Lease,
        *,
        receive_count: int,
        uploaded_at: datetime | None,
        current_etag: Callable[[], Awaitable[str | None]],
    ) -> Claim:
        """Take the item for ``obj`` under ``lease``, or say why not.

        ``current_etag`` reads the original's ETag now; it settles the order of two objects when
        their events carry no sequencer to compare.
        """
        now = time.time()
        sets = self._claim_sets(media_id, obj, lease, now, receive_count, uploaded_at, first=True)
        try:
            # The common case in one call: the first event for a fresh upload.
            fresh = await self._update(
                media_id,
                sets={**sets, "attempts": 1, "deaths": 0, "rev": 1, SOLE_OBJECT: True},
                removes=(*_CLAIM_REMOVES, "suspect_token"),
                condition="#status = :pending AND attribute_not_exists(#source.#tag)",
                names={"#status": "status", "#source": "source", "#tag": "tag"},
                values={":pending": MediaStatus.PENDING_UPLOAD.value},
            )
            return Claim(ClaimOutcome.CLAIMED, fresh)
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
        for _ in range(_CLAIM_ROUNDS):
            found = await self.get(media_id)
            if found is None:
                return Claim(ClaimOutcome.MISSING, None)
            item = found
            decision = decide(item, obj, lease, now)
            if decision is Decision.UNKNOWN_ORDER:
                # No sequencers to compare: the object S3 holds now is the newest.
                if await current_etag() != obj.etag:
                    return Claim(ClaimOutcome.OUTDATED, item)
                decision = Decision.NEWER
            if isinstance(decision, ClaimOutcome):
                retry = lease_left(item, now) + 1.0 if decision is ClaimOutcome.LEASED else None
                return Claim(decision, item, retry_after=retry)
            if decision is Decision.MINE:
                # Our own claim, whose answer was lost and whose retry failed its condition: a
                # suspect still if it was one (a killer taken for innocent kills its batch-mates).
                mine = item.get("suspect_token") == lease.token
                return Claim(ClaimOutcome.CLAIMED, item, suspect=mine)
            reclaim = decision is Decision.RECLAIM
            death = reclaim and died(item)
            attempts = int(item.get("attempts") or 0) + 1 if reclaim else 1
            # Tries that killed their worker, whatever message carried them (copies included);
            # a suspect sent on as a copy stays one without dying again.
            deaths = int(item.get("deaths") or 0) + int(death) if reclaim else 0
            suspect = death or (reclaim and sent_on(item))
            sets = self._claim_sets(
                media_id, obj, lease, now, receive_count, uploaded_at, first=not reclaim
            )
            rev = item.get("rev")
            sets |= {"attempts": attempts, "deaths": deaths, "rev": int(rev or 0) + 1}
            if suspect:
                sets["suspect_token"] = lease.token  # for the retry of a lost answer (MINE)
            try:
                item = await self._update(
                    media_id,
                    sets=sets,
                    removes=(
                        *_CLAIM_REMOVES,
                        SOLE_OBJECT,
                        *(() if suspect else ("suspect_token",)),
                    ),
                    condition=(
                        "#status <> :deleting AND "
                        + ("#rev = :rev" if rev is not None else "attribute_not_exists(#rev)")
                    ),
                    names={"#status": "status", "#rev": "rev"},
                    values={":deleting": MediaStatus.DELETING.value}
                    | ({":rev": rev} if rev is not None else {}),
                )
            except ClientError as exc:
                if not is_conditional_failure(exc):
                    raise
                continue  # changed since we read it: decide again on what it is now
            return Claim(
                ClaimOutcome.CLAIMED,
                item,
                replaced=decision is Decision.NEWER,
                suspect=suspect,
            )
        raise ClaimContended(f"item {media_id} kept changing during the claim")

    def _claim_sets(
        self,
        media_id: str,
        obj: StoredObject,
        lease: Lease,
        now: float,
        receive_count: int,
        uploaded_at: datetime | None,
        *,
        first: bool,
    ) -> dict[str, Any]:
        stamp = iso(utc_now())
        sets: dict[str, Any] = {
            "status": MediaStatus.PROCESSING.value,
            "source": obj.as_item(),
            "lease": _lease_item(lease, now),
            "receive_count": receive_count,
            "updated_at": stamp,
            "processing_started_at": stamp,
            # Owed a finish from now on: the sweep looks for what is owed too long.
            "owed_shard": owed_shard(media_id),
            "owed_since": stamp,
        }
        if first:
            sets["uploaded_at"] = iso(uploaded_at) if uploaded_at else stamp
        return sets

    async def renew_lease(self, media_id: str, lease: Lease) -> bool:
        """Extend our lease; False when it is no longer ours (the item moved on)."""
        try:
            await self._update(
                media_id,
                sets={"lease": _lease_item(lease, time.time())},
                condition="#lease.#token = :token AND #status = :processing",
                names={"#lease": "lease", "#token": "token", "#status": "status"},
                values={":token": lease.token, ":processing": MediaStatus.PROCESSING.value},
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    async def release_lease(self, media_id: str, lease: Lease) -> None:
        """Give the lease up early, so the message's next delivery need not wait for it."""
        try:
            await self._ddb.update_item(
                TableName=self._table,
                Key=_encode({"media_id": media_id}),
                UpdateExpression="REMOVE #lease",
                ConditionExpression="#lease.#token = :token",
                ExpressionAttributeNames={"#lease": "lease", "#token": "token"},
                ExpressionAttributeValues=_encode({":token": lease.token}),
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise

    async def send_on_lease(self, media_id: str, lease: Lease) -> None:
        """Let our lease lapse now, marked sent on: the next claim takes over at once, as a
        suspect, and counts no death for this try (it never ran)."""
        now = time.time()
        try:
            await self._update(
                media_id,
                sets={"lease": {**_lease_item(lease, now), "expires": now - 1, "sent_on": True}},
                condition="#lease.#token = :token",
                names={"#lease": "lease", "#token": "token"},
                values={":token": lease.token},
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise

    async def note_receive(self, media_id: str, holder: str, receive_count: int) -> None:
        """Record that the lease holder's message was received again (the sweep reads it)."""
        try:
            await self._update(
                media_id,
                sets={"receive_count": receive_count},
                condition="#lease.#token = :holder AND #rc < :rc",
                names={"#lease": "lease", "#token": "token", "#rc": "receive_count"},
                values={":holder": holder, ":rc": receive_count},
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise

    async def _finish(
        self,
        media_id: str,
        tag: str,
        lock_token: str,
        updates: dict[str, Any],
        removes: tuple[str, ...],
        *,
        abandoned_after: int | None = None,
    ) -> dict[str, Any]:
        now = time.time()
        sets = {
            **updates,
            "event_pending": True,
            # The finisher sends the event; nobody else may while it does (see worker.notify).
            "event_lock": {"token": lock_token, "until": now + self._event_lock_seconds},
        }
        condition = "#status = :processing AND #source.#tag = :tag"
        names = {"#status": "status", "#source": "source", "#tag": "tag"}
        values: dict[str, Any] = {":processing": MediaStatus.PROCESSING.value, ":tag": tag}
        if abandoned_after is not None:
            # Only while nobody holds it and its message has had its last delivery; never one
            # sent on as a copy, which is on its way to a claim.
            condition += (
                " AND (attribute_not_exists(#lease) OR #lease.#expires < :now)"
                " AND attribute_not_exists(#lease.#sent_on)"
                " AND (receive_count >= :max_receives OR deaths >= :max_deaths)"
            )
            names.update({"#lease": "lease", "#expires": "expires", "#sent_on": "sent_on"})
            values.update(
                {":now": now, ":max_receives": abandoned_after, ":max_deaths": abandoned_after - 1}
            )
        try:
            return await self._update(
                media_id,
                sets=sets,
                removes=("lease", *removes),
                counters=("rev",),
                applied=True,
                condition=condition,
                names=names,
                values=values,
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
        item = await self.get(media_id)
        if (
            abandoned_after is None
            and item is not None
            and item.get("status") == updates["status"]
            and (item.get("source") or {}).get("tag") == tag
        ):
            # Our own earlier write, whose answer was lost (or another delivery's of the same
            # object with the same outcome): the fact is recorded, and still to be announced.
            return item
        raise StaleJob(f"item {media_id} is no longer processing this upload")

    async def mark_ready(
        self,
        media_id: str,
        tag: str,
        *,
        lock_token: str,
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
        }
        if location is not None:
            updates["location"] = location
        return await self._finish(
            media_id, tag, lock_token, updates, ("location", "error", "error_retryable")
        )

    async def mark_failed(
        self,
        media_id: str,
        tag: str,
        *,
        lock_token: str,
        reason: str,
        retryable: bool,
        kind: str | None,
        stages: list[dict[str, Any]],
        warnings: list[str],
        abandoned_after: int | None = None,
    ) -> dict[str, Any]:
        """FAILED with a reason; ``abandoned_after`` is the sweep's: only if nobody holds it."""
        now = iso(utc_now())
        updates = {
            "status": MediaStatus.FAILED.value,
            "error": reason,
            "error_retryable": retryable,
            "kind": kind,
            "stages": stages,
            "warnings": warnings,
            "updated_at": now,
            "processed_at": now,
        }
        return await self._finish(
            media_id,
            tag,
            lock_token,
            updates,
            ("metadata", "renditions", "location"),
            abandoned_after=abandoned_after,
        )


def _lease_item(lease: Lease, now: float) -> dict[str, Any]:
    return {"token": lease.token, "message_id": lease.message_id, "expires": now + lease.seconds}
