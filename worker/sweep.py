"""The sweep: what is owed too long is settled, whatever happened to the job that owed it.

Every claimed item is in a sparse index (``owed``) until its event is confirmed sent. Each
worker looks through it now and then, and for items owed longer than a grace period:

- a READY or FAILED item whose event is still pending gets it sent (under the event lock, so
  a send under way elsewhere is never doubled);
- a PROCESSING item whose lease has lapsed after its message's last delivery ends FAILED with a
  reason: every try killed its worker (out of memory, a crashing decoder), and SQS has moved the
  message to the dead-letter queue, where nothing will process it again.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError
from structlog.typing import FilteringBoundLogger

from mediamill_core.items import OWED_INDEX, MediaStatus, iso, utc_now
from mediamill_core.items import decode as _decode
from mediamill_core.items import encode as _encode
from mediamill_core.keys import media_id_from_key, object_tag
from stages.contract import TransientError
from worker import metrics
from worker.claims import killed_worker_reason, lease_left, sent_on
from worker.events import MalformedMessage, UploadEvent, parse_message
from worker.notify import Outbox
from worker.store import OWED_SHARDS, MediaStore, StaleJob

_PAGE = 100
_DLQ_PEEKS = 5  # receives of up to 10 messages each, per sweep


@dataclass(slots=True)
class SweepReport:
    looked_at: int = 0
    announced: int = 0
    abandoned: int = 0


class Sweeper:
    """Settles owed items of the media table; safe to run in every worker at once."""

    def __init__(
        self,
        *,
        dynamodb: Any,
        table: str,
        store: MediaStore,
        outbox: Outbox,
        max_receive_count: int,
        grace_seconds: float,
        sqs: Any = None,
        dead_letter_urls: Sequence[str] = (),
        interval_seconds: float,
        log: FilteringBoundLogger,
    ) -> None:
        self._ddb = dynamodb
        self._table = table
        self._store = store
        self._outbox = outbox
        self._max_receives = max_receive_count
        self._sqs = sqs
        self._dead_letter_urls = tuple(dead_letter_urls)
        self._grace = grace_seconds
        self._interval = interval_seconds
        self._log = log
        self._token = f"sweep-{secrets.token_hex(6)}"

    async def run(self) -> None:
        """Sweep every interval (with jitter, so that workers started together spread out)."""
        while True:
            await anyio.sleep(self._interval * random.uniform(0.5, 1.5))
            try:
                report = await self.sweep_once()
            except (ClientError, BotoCoreError) as exc:
                self._log.warning("sweep_failed", error=str(exc))
                continue
            if report.announced or report.abandoned:
                self._log.info(
                    "sweep_settled",
                    looked_at=report.looked_at,
                    announced=report.announced,
                    abandoned=report.abandoned,
                )

    async def sweep_once(self) -> SweepReport:
        report = SweepReport()
        cutoff = iso(utc_now() - timedelta(seconds=self._grace))
        for shard in range(OWED_SHARDS):
            async for entry in self._owed(str(shard), cutoff):
                report.looked_at += 1
                await self._settle(entry, report)
        await self._peek_dead_letters(report)
        return report

    async def _peek_dead_letters(self, report: SweepReport) -> None:
        """Uploads whose message reached a DLQ while their item still says PROCESSING.

        The item's count of deliveries can fall short of SQS's (a receive whose answer was lost
        counts there, not here), so each lane's DLQ is looked at too: with visibility 0, so each
        message stays where it is, for an operator to read and redrive.
        """
        if self._sqs is None:
            return
        for url in self._dead_letter_urls:
            await self._peek_dead_letter_queue(url, report)

    async def _peek_dead_letter_queue(self, url: str, report: SweepReport) -> None:
        for _ in range(_DLQ_PEEKS):
            answer = await self._sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=0,
                WaitTimeSeconds=0,
            )
            messages = answer.get("Messages", [])
            for message in messages:
                for upload in _uploads_in(str(message.get("Body", ""))):
                    await self._settle_dead_letter(upload, report)
            if len(messages) < 10:
                return

    async def _settle_dead_letter(self, upload: UploadEvent, report: SweepReport) -> None:
        media_id = media_id_from_key(upload.key)
        if media_id is None:
            return
        item = await self._store.get(media_id)
        if item is None or item.get("status") != MediaStatus.PROCESSING.value:
            return
        tag = object_tag(upload.etag, upload.order, upload.version_id)
        if (item.get("source") or {}).get("tag") != tag or lease_left(item, time.time()) > 0:
            return
        if sent_on(item):
            return  # this message was requeued as a copy, which is on its way to take it
        log = self._log.bind(media_id=media_id, status=item.get("status"))
        try:
            await self._fail_abandoned(item, log, abandoned_after=0)
            report.abandoned += 1
        except TransientError as exc:
            log.warning("sweep_item_failed", error=str(exc))

    def _owed(self, shard: str, cutoff: str) -> AsyncIterator[dict[str, Any]]:
        return owed_entries(self._ddb, self._table, shard, cutoff)

    def _worth_a_look(self, entry: dict[str, Any]) -> bool:
        """From the index alone: a job still holds it, or its message has tries left."""
        if entry.get("status") != MediaStatus.PROCESSING.value:
            return True
        return self._abandoned(entry)

    async def _settle(self, entry: dict[str, Any], report: SweepReport) -> None:
        if not self._worth_a_look(entry):
            return
        # The index is eventually consistent: act only on the item itself.
        item = await self._store.get(str(entry["media_id"]))
        if item is None:
            return
        status = item.get("status")
        log = self._log.bind(media_id=item["media_id"], status=status)
        try:
            if status in (MediaStatus.READY.value, MediaStatus.FAILED.value):
                if await self._outbox.announce(item, self._token, log):
                    report.announced += 1
                    metrics.SWEPT.labels("announced").inc()
                    log.info("owed_event_sent")
                return
            if status == MediaStatus.PROCESSING.value and self._abandoned(item):
                await self._fail_abandoned(item, log)
                report.abandoned += 1
        except TransientError as exc:
            log.warning("sweep_item_failed", error=str(exc))

    def _abandoned(self, item: dict[str, Any]) -> bool:
        """Nobody holds it, and its message has had its last delivery or it keeps killing."""
        if lease_left(item, time.time()) > 0 or sent_on(item):
            return False  # held, or a copy of its message is on its way to take it
        receives = int(item.get("receive_count") or 0)
        # The lapsed lease is one more death than the item has counted.
        deaths = int(item.get("deaths") or 0) + 1
        return receives >= self._max_receives or deaths >= self._max_receives

    async def _fail_abandoned(
        self, item: dict[str, Any], log: FilteringBoundLogger, *, abandoned_after: int | None = None
    ) -> None:
        receives = int(item.get("receive_count") or 0)
        reason = killed_worker_reason(receives)
        try:
            failed = await self._store.mark_failed(
                item["media_id"],
                str((item.get("source") or {}).get("tag")),
                lock_token=self._token,
                reason=reason,
                # Not revived by a stray copy of its message: an operator reprocesses it.
                retryable=False,
                kind=item.get("kind"),
                stages=[],
                warnings=[],
                abandoned_after=self._max_receives if abandoned_after is None else abandoned_after,
            )
        except StaleJob:
            return  # someone took it up again or finished it meanwhile
        metrics.SWEPT.labels("abandoned").inc()
        metrics.KILLERS.inc()
        log.warning("abandoned_upload_failed", reason=reason)
        await self._outbox.announce(failed, self._token, log)


async def owed_entries(
    dynamodb: Any, table: str, shard: str, cutoff: str, *, status: str | None = None
) -> AsyncIterator[dict[str, Any]]:
    """The owed index's entries of one shard owed since before ``cutoff`` (of one status)."""
    start: dict[str, Any] | None = None
    values = {":shard": shard, ":cutoff": cutoff}
    query: dict[str, Any] = {
        "TableName": table,
        "IndexName": OWED_INDEX,
        "KeyConditionExpression": "owed_shard = :shard AND owed_since < :cutoff",
        "Limit": _PAGE,
    }
    if status is not None:
        query["FilterExpression"] = "#status = :status"
        query["ExpressionAttributeNames"] = {"#status": "status"}
        values[":status"] = status
    query["ExpressionAttributeValues"] = _encode(values)
    while True:
        if start is not None:
            query["ExclusiveStartKey"] = start
        page = await dynamodb.query(**query)
        for raw in page.get("Items", []):
            yield _decode(raw)
        start = page.get("LastEvaluatedKey")
        if not start:
            return


def _uploads_in(body: str) -> tuple[UploadEvent, ...]:
    try:
        return parse_message(body).uploads
    except MalformedMessage:
        return ()  # what the worker could not read is for a person, not for the sweep
