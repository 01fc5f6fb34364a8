"""Stuck uploads are found, not waited for: a periodic count of items PROCESSING for too long.

An item is PROCESSING from its claim until a job finishes it, or the sweep settles it. One try
runs its stages for at most the longest chain of their timeouts (and the grace, and the wait for
scratch space); between two tries the item waits for the message's next delivery, at most the
longest retry backoff, or the visibility timeout when the worker died. Past all that together,
no delivery can still be under way: the item is stuck, and someone should look.

The count reads the sparse ``owed`` index (PROCESSING items are on it from their claim, with
``owed_since`` the claim's time), never the table. One worker at a time does it: it holds a
lease on a well-known key of the table (not a media id, so the API never serves it), renews it
at each run, and exports the count; the other workers export no sample at all, so the fleet's
``max`` is the current count and never a stale copy. When the holder stops, it gives the lease
up, and another worker takes the check at its next try.
"""

from __future__ import annotations

import random
import secrets
import time
from datetime import timedelta
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError
from structlog.typing import FilteringBoundLogger

from mediamill_core.items import (
    RESERVED_KEY_PREFIX,
    MediaStatus,
    is_conditional_failure,
    iso,
    utc_now,
)
from mediamill_core.items import encode as _encode
from mediamill_core.settings import Settings
from worker import metrics
from worker.registry import StageRegistry
from worker.store import OWED_SHARDS
from worker.sweep import owed_entries

# The check's lease and last result live here; it is not a media id (32 hex digits).
CHECK_KEY = f"{RESERVED_KEY_PREFIX}check:stuck-items"
# The holder keeps the check while it renews within this many intervals.
_LEASE_INTERVALS = 3
_EXAMPLES = 10  # media ids named in the log line and the check's record
_GIVE_UP_SECONDS = 5.0


def stuck_after_seconds(settings: Settings, registry: StageRegistry) -> float:
    """How long an item may rightly stay PROCESSING after its last claim."""
    one_try = (
        registry.critical_path_seconds()
        + settings.stage_grace_seconds
        + settings.spool_wait_seconds
    )
    next_delivery = settings.retry_max_seconds + settings.visibility_timeout
    return one_try + next_delivery


class StuckCheck:
    """Counts stuck items every interval while this worker holds the check."""

    def __init__(
        self,
        *,
        dynamodb: Any,
        table: str,
        stuck_after_seconds: float,
        interval_seconds: float,
        log: FilteringBoundLogger,
        gauge: metrics.HeldGauge = metrics.STUCK_ITEMS,
    ) -> None:
        self._ddb = dynamodb
        self._table = table
        self.stuck_after = stuck_after_seconds
        self._interval = interval_seconds
        self._lease_seconds = interval_seconds * _LEASE_INTERVALS
        self._log = log
        self._gauge = gauge
        self.token = f"stuck-{secrets.token_hex(6)}"

    async def run(self) -> None:
        """Try at once, then every interval (jittered, as the sweep); give the check up on exit."""
        try:
            while True:
                try:
                    await self.check_once()
                except (ClientError, BotoCoreError) as exc:
                    self._log.warning("stuck_check_failed", error=str(exc))
                # Under half the lease at most, so the holder always renews in time.
                await anyio.sleep(self._interval * random.uniform(0.5, 1.5))
        finally:
            # Bounded: a stopping worker must not wait on it (the lease lapses by itself).
            with anyio.move_on_after(_GIVE_UP_SECONDS, shield=True):
                await self.give_up()

    async def check_once(self) -> int | None:
        """The count, or None when another worker holds the check."""
        if not await self._take():
            self._gauge.clear()
            return None
        stuck = await self._stuck_items()
        self._gauge.set(len(stuck), for_seconds=self._lease_seconds)
        examples = sorted(stuck)[:_EXAMPLES]
        await self._record(len(stuck), examples)
        if stuck:
            self._log.warning(
                "stuck_items_found",
                count=len(stuck),
                media_ids=examples,
                stuck_after_seconds=self.stuck_after,
                detail="PROCESSING longer than any try and the wait for the next may take",
            )
        return len(stuck)

    async def give_up(self) -> None:
        """Let the check go now, so another worker need not wait for the lease to lapse."""
        self._gauge.clear()
        try:
            await self._ddb.update_item(
                TableName=self._table,
                Key=_encode({"media_id": CHECK_KEY}),
                UpdateExpression="REMOVE holder, expires",
                ConditionExpression="holder = :me",
                ExpressionAttributeValues=_encode({":me": self.token}),
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):
                self._log.warning("stuck_check_not_released", error=str(exc))
        except BotoCoreError as exc:
            self._log.warning("stuck_check_not_released", error=str(exc))

    async def _take(self) -> bool:
        now = time.time()
        try:
            await self._ddb.update_item(
                TableName=self._table,
                Key=_encode({"media_id": CHECK_KEY}),
                UpdateExpression="SET holder = :me, expires = :until",
                ConditionExpression=(
                    "attribute_not_exists(holder) OR holder = :me OR expires < :now"
                ),
                ExpressionAttributeValues=_encode(
                    {":me": self.token, ":until": now + self._lease_seconds, ":now": now}
                ),
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    async def _record(self, count: int, examples: list[str]) -> None:
        """The last result beside the lease, for whoever reads the table."""
        try:
            await self._ddb.update_item(
                TableName=self._table,
                Key=_encode({"media_id": CHECK_KEY}),
                UpdateExpression=(
                    "SET checked_at = :at, stuck = :count, examples = :examples, "
                    "stuck_after_seconds = :after"
                ),
                ConditionExpression="holder = :me",
                ExpressionAttributeValues=_encode(
                    {
                        ":at": iso(utc_now()),
                        ":count": count,
                        ":examples": examples,
                        ":after": self.stuck_after,
                        ":me": self.token,
                    }
                ),
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
            # Taken over meanwhile (this worker stalled past its lease): the new holder counts.
            self._gauge.clear()

    async def _stuck_items(self) -> set[str]:
        cutoff = iso(utc_now() - timedelta(seconds=max(0.0, self.stuck_after)))
        processing = MediaStatus.PROCESSING.value
        return {
            str(entry["media_id"])
            for shard in range(OWED_SHARDS)
            async for entry in owed_entries(
                self._ddb, self._table, str(shard), cutoff, status=processing
            )
        }
