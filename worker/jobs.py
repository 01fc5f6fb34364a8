"""One upload, start to finish: claim the item, spool the original, run the stages, record.

Returns a verdict for the message carrying the upload; the consumer turns it into a delete, a
retry later, or a message left for the dead-letter queue.
"""

from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import anyio
import structlog
from botocore.exceptions import BotoCoreError, ClientError
from structlog.typing import FilteringBoundLogger

from mediamill_core.items import utc_now
from mediamill_core.keys import media_id_from_key
from stages.contract import BadMediaError, MediaSource, StoresAhead, TransientError
from worker import metrics
from worker.claims import (
    ClaimContended,
    ClaimOutcome,
    Lease,
    killed_worker_reason,
    source_of,
    stored_object,
)
from worker.events import UploadEvent
from worker.job_state import JobOutcome
from worker.live_photos import LivePhotos, pair_live_photo
from worker.notify import Outbox
from worker.originals import Originals, Superseded
from worker.pipeline import Pipeline
from worker.queue import MEDIA
from worker.solo import SoloGate
from worker.spool import Reservation, Spool
from worker.store import MediaStore, StaleJob
from worker.verdicts import DONE, ERROR, REQUEUE, RETRY, SUPERSEDED, Attempt, Result, Verdict


class UploadProcessor:
    """Runs uploads through the pipeline; shared by every job of one worker."""

    def __init__(
        self,
        *,
        s3: Any,
        store: MediaStore,
        outbox: Outbox,
        pipeline: Pipeline,
        originals_bucket: str,
        spool: Spool,
        lease_seconds: float,
        spool_wait_seconds: float = 60.0,
        live: LivePhotos | None = None,
        stores_ahead: StoresAhead | None = None,
    ) -> None:
        self._originals = Originals(s3)
        self._stores_ahead = stores_ahead
        self._store = store
        self._outbox = outbox
        self._pipeline = pipeline
        self._originals_bucket = originals_bucket
        self._scratch = spool
        self._lease_seconds = lease_seconds
        self._spool_wait = spool_wait_seconds
        self._live = live
        self.solo = SoloGate()

    async def process(
        self, upload: UploadEvent, attempt: Attempt, log: FilteringBoundLogger
    ) -> Result:
        media_id = media_id_from_key(upload.key)
        log = log.bind(media_id=media_id, key=upload.key)
        if upload.bucket != self._originals_bucket or media_id is None:
            log.error(
                "foreign_object",
                bucket=upload.bucket,
                detail="not an original made through the API; left for the DLQ",
            )
            metrics.JOBS.labels("error", attempt.lane).inc()
            return ERROR
        with structlog.contextvars.bound_contextvars(media_id=media_id):
            return await self._claimed(media_id, upload, attempt, log)

    async def _claimed(
        self, media_id: str, upload: UploadEvent, attempt: Attempt, log: FilteringBoundLogger
    ) -> Result:
        if self.solo.active:
            # A suspect has this worker to itself. Handing the message back would spend one of
            # its tries each time it shares a receive with the suspect; a copy spends none.
            metrics.JOBS.labels("requeued", attempt.lane).inc()
            return REQUEUE
        obj = stored_object(upload)
        lease = Lease(secrets.token_hex(8), attempt.message_id, self._lease_seconds)

        async def current_etag() -> str | None:
            return await self._originals.current_etag(upload)

        try:
            claim = await self._store.claim(
                media_id,
                obj,
                lease,
                receive_count=attempt.number,
                uploaded_at=upload.event_time,
                current_etag=current_etag,
            )
        except (ClientError, BotoCoreError, ClaimContended) as exc:
            log.warning("claim_failed", error=str(exc))
            metrics.JOBS.labels("retry", attempt.lane).inc()
            return RETRY
        if claim.outcome is ClaimOutcome.MISSING:
            metrics.ORPHANS.inc()
            metrics.JOBS.labels("orphan", attempt.lane).inc()
            log.warning("upload_without_item", detail="no media item: deleted, or not via the API")
            return DONE
        if claim.outcome is ClaimOutcome.OUTDATED:
            metrics.JOBS.labels("outdated", attempt.lane).inc()
            log.info("outdated_upload", detail="the item already has a newer object")
            return DONE
        if claim.outcome is ClaimOutcome.LEASED:
            return await self._leased(media_id, claim.item or {}, claim.retry_after, attempt, log)
        if claim.outcome is ClaimOutcome.DUPLICATE:
            assert claim.item is not None
            metrics.JOBS.labels("duplicate", attempt.lane).inc()
            log.info("duplicate_delivery", status=claim.item.get("status"))
            if self._live is not None:
                # The job that made it READY may have died before it paired a Live Photo.
                try:
                    await pair_live_photo(self._live, claim.item, log)
                except TransientError as exc:
                    log.warning("live_photo_not_paired", error=str(exc))
                    return RETRY
            return await self._announce(claim.item, secrets.token_hex(8), log)

        source = source_of(media_id, claim.item, upload, obj)
        if claim.replaced:
            log.info("upload_replaced", detail="a newer object: the previous one's results cleared")
        deaths = int((claim.item or {}).get("deaths") or 0)
        if claim.suspect and deaths >= attempt.of:
            # Whatever message carries it, it has killed its worker on every try: stop here.
            metrics.JOBS.labels("failed", attempt.lane).inc()
            metrics.KILLERS.inc()
            reason = killed_worker_reason(deaths)
            log.error("upload_kills_its_worker", deaths=deaths)
            return await self._fail(source, reason, False, None, log)
        if self.solo.active:
            # A suspect took this worker while we claimed: go elsewhere, as a suspect if we are.
            return await self._requeue_claimed(media_id, lease, claim.suspect, attempt, log)
        if claim.suspect:
            log.warning("job_suspect", detail="its last try died with its worker: it runs alone")
        log.info("job_started", size=upload.size, attempt=attempt.number)
        result = RETRY
        try:
            async with (
                self.solo.alone(attempt.message_id) if claim.suspect else self.solo.shared(),
                self._scratch.reserve(upload.size, wait_seconds=self._spool_wait) as scratch,
            ):
                job_dir = self._scratch.job_dir(media_id)
                try:
                    result = await self._leased_run(
                        source, upload, job_dir, scratch, attempt, lease, log
                    )
                finally:
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(shutil.rmtree, job_dir, True)
        except TransientError as exc:
            result = await self._retry_or_give_up(source, exc, None, attempt, log)
        finally:
            if result.verdict is not Verdict.DONE or result is SUPERSEDED:
                # The next delivery must not wait for a lease nobody uses.
                with anyio.CancelScope(shield=True):
                    await self._release(media_id, lease, log)
        return result

    async def _requeue_claimed(
        self,
        media_id: str,
        lease: Lease,
        suspect: bool,
        attempt: Attempt,
        log: FilteringBoundLogger,
    ) -> Result:
        metrics.JOBS.labels("requeued", attempt.lane).inc()
        try:
            if suspect:
                await self._store.send_on_lease(media_id, lease)
            else:
                await self._store.release_lease(media_id, lease)
        except (ClientError, BotoCoreError) as exc:
            log.warning("lease_not_released", error=str(exc), detail="it lapses by itself")
        log.info("claimed_job_requeued", suspect=suspect)
        return REQUEUE

    async def _leased(
        self,
        media_id: str,
        item: dict[str, Any],
        retry_after: float | None,
        attempt: Attempt,
        log: FilteringBoundLogger,
    ) -> Result:
        """Another job holds this very object: never run the pipeline twice at once."""
        metrics.JOBS.labels("leased", attempt.lane).inc()
        holder = item.get("lease") or {}
        if holder.get("message_id") != attempt.message_id:
            # A second message for the same object: the holder's own message stays until it
            # finishes, and comes back if its worker dies.
            log.info("duplicate_while_running", detail="another job holds this object")
            return DONE
        # Our own message again while its job is still leased (its worker may be dead): come
        # back when the lease lapses. The sweep must know how many deliveries it has had.
        if attempt.last and isinstance(holder.get("token"), str):
            await self._note_receive(media_id, holder["token"], attempt.number, log)
        log.info("job_leased_elsewhere", retry_after=retry_after)
        return Result(Verdict.RETRY, retry_after)

    async def _note_receive(
        self, media_id: str, holder: str, number: int, log: FilteringBoundLogger
    ) -> None:
        try:
            await self._store.note_receive(media_id, holder, number)
        except (ClientError, BotoCoreError) as exc:
            log.warning("note_receive_failed", error=str(exc))

    async def _release(self, media_id: str, lease: Lease, log: FilteringBoundLogger) -> None:
        try:
            await self._store.release_lease(media_id, lease)
        except (ClientError, BotoCoreError) as exc:
            log.warning("lease_not_released", error=str(exc), detail="it lapses by itself")

    async def _leased_run(
        self,
        source: MediaSource,
        upload: UploadEvent,
        job_dir: Path,
        scratch: Reservation,
        attempt: Attempt,
        lease: Lease,
        log: FilteringBoundLogger,
    ) -> Result:
        """Run the job while renewing its lease, so duplicates wait and a dead worker's lapses."""
        result = RETRY
        async with anyio.create_task_group() as group:
            group.start_soon(self._renew, source.media_id, lease, log)
            try:
                result = await self._run(source, upload, job_dir, scratch, attempt, log)
            finally:
                group.cancel_scope.cancel()
        return result

    async def _renew(self, media_id: str, lease: Lease, log: FilteringBoundLogger) -> None:
        while True:
            await anyio.sleep(lease.seconds / 3)
            try:
                if not await self._store.renew_lease(media_id, lease):
                    log.info("lease_lost", detail="the item moved on; the job ends as stale")
                    return
            except (ClientError, BotoCoreError) as exc:
                log.warning("lease_not_renewed", error=str(exc))

    async def _run(
        self,
        source: MediaSource,
        upload: UploadEvent,
        job_dir: Path,
        scratch: Reservation,
        attempt: Attempt,
        log: FilteringBoundLogger,
    ) -> Result:
        started = time.monotonic()
        original = job_dir / "original"
        try:
            await self._originals.spool(source, original)
        except Superseded as exc:
            log.info("upload_superseded", detail=str(exc))
            metrics.JOBS.labels("superseded", attempt.lane).inc()
            return SUPERSEDED
        except TransientError as exc:
            return await self._retry_or_give_up(source, exc, None, attempt, log)

        outcome = await self._pipeline.run(
            source,
            original,
            job_dir,
            attempt=attempt.number,
            max_attempts=attempt.of,
            log=log,
            stores_ahead=self._stores_ahead,
            scratch=scratch,
        )
        error = outcome.error
        seconds = round(time.monotonic() - started, 3)
        if error is None:
            metrics.JOBS.labels("ready", attempt.lane).inc()
            _observe_latency(upload, attempt, "ready")
            log.info("job_ready", seconds=seconds, kind=outcome.kind)
            return DONE
        if isinstance(error, StaleJob):
            metrics.JOBS.labels("duplicate", attempt.lane).inc()
            log.info("job_stale", detail=str(error))
            return DONE
        if isinstance(error, BadMediaError):
            log.info("job_failed_bad_media", reason=str(error), seconds=seconds)
            result = await self._fail(source, str(error), False, outcome, log)
            if result.verdict is Verdict.DONE:
                metrics.JOBS.labels("failed", attempt.lane).inc()
                _observe_latency(upload, attempt, "failed")
            return result
        return await self._retry_or_give_up(source, error, outcome, attempt, log)

    async def _retry_or_give_up(
        self,
        source: MediaSource,
        error: BaseException,
        outcome: JobOutcome | None,
        attempt: Attempt,
        log: FilteringBoundLogger,
    ) -> Result:
        transient = isinstance(error, TransientError)
        if transient:
            log.warning("job_retry", error=str(error), last_try=attempt.last)
        else:
            log.error("job_error", error=f"{type(error).__name__}: {error}", exc_info=error)
        if attempt.last:
            # The message goes to the DLQ for an operator; the owner must not see it stuck.
            cause = str(error) if transient else f"{type(error).__name__}: {error}"
            reason = f"processing failed after {attempt.number} attempts: {cause}"
            await self._fail(source, reason, True, outcome, log)
        metrics.JOBS.labels("retry" if transient else "error", attempt.lane).inc()
        if isinstance(error, TransientError):
            return Result(Verdict.RETRY, error.retry_after)
        return ERROR

    async def _fail(
        self,
        source: MediaSource,
        reason: str,
        retryable: bool,
        outcome: JobOutcome | None,
        log: FilteringBoundLogger,
    ) -> Result:
        """Mark the item FAILED for this object and announce it."""
        token = secrets.token_hex(8)
        try:
            item = await self._store.mark_failed(
                source.media_id,
                source.tag,
                lock_token=token,
                reason=reason[:2000],
                retryable=retryable,
                kind=outcome.kind.value if outcome is not None and outcome.kind else None,
                stages=[r.as_dict() for r in outcome.records] if outcome is not None else [],
                warnings=list(outcome.warnings) if outcome is not None else [],
            )
        except StaleJob as exc:
            log.info("job_stale", detail=str(exc))
            return DONE
        except (ClientError, BotoCoreError) as exc:
            log.warning("mark_failed_failed", error=str(exc))
            return RETRY
        return await self._announce(item, token, log)

    async def _announce(
        self, item: dict[str, Any], token: str, log: FilteringBoundLogger
    ) -> Result:
        """Send what the item owes; a failure leaves it owed, for the sweep to send."""
        try:
            await self._outbox.announce(item, token, log)
        except TransientError as exc:
            log.warning("event_not_sent", error=str(exc), detail="the sweep sends it later")
        return DONE


def _observe_latency(upload: UploadEvent, attempt: Attempt, outcome: str) -> None:
    # Fresh uploads only: a backfill job redoes an upload made long ago, which nobody waits on.
    if upload.event_time is not None and attempt.lane == MEDIA:
        elapsed = (utc_now() - upload.event_time).total_seconds()
        metrics.UPLOAD_TO_DONE.labels(outcome).observe(max(0.0, elapsed))
