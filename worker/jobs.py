"""One upload, start to finish: claim the item, spool the original, run the stages, record.

Returns a verdict for the message carrying the upload; the consumer turns it into a delete, a
retry later, or a message left for the dead-letter queue.
"""

from __future__ import annotations

import enum
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import structlog
from botocore.exceptions import BotoCoreError, ClientError
from structlog.typing import FilteringBoundLogger

from stages.contract import BadMediaError, MediaSource, TransientError
from stages.publish import send_media_event
from worker import metrics
from worker.events import UploadEvent
from worker.items import utc_now
from worker.keys import media_id_from_key
from worker.notify import MediaEvents
from worker.pipeline import JobOutcome, Pipeline
from worker.store import ClaimOutcome, MediaStore, StaleJob

_SPOOL_CHUNK = 1024 * 1024
_ENOSPC = 28


class Verdict(enum.Enum):
    DONE = "done"  # finished, a duplicate, or nothing left to do: delete the message
    RETRY = "retry"  # transient trouble: try again after a backoff
    ERROR = "error"  # not ours to fix here (a bug, a foreign object): leave it for the DLQ


@dataclass(frozen=True, slots=True)
class Result:
    verdict: Verdict
    retry_after: float | None = None


DONE = Result(Verdict.DONE)
RETRY = Result(Verdict.RETRY)
ERROR = Result(Verdict.ERROR)


class Superseded(Exception):
    """The original is gone or was replaced since the event: nothing left to do for it."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """Which delivery of the message this is."""

    number: int
    of: int

    @property
    def last(self) -> bool:
        return self.number >= self.of


class UploadProcessor:
    """Runs uploads through the pipeline; shared by every job of one worker."""

    def __init__(
        self,
        *,
        s3: Any,
        store: MediaStore,
        events: MediaEvents,
        pipeline: Pipeline,
        originals_bucket: str,
        spool_root: Path,
    ) -> None:
        self._s3 = s3
        self._store = store
        self._events = events
        self._pipeline = pipeline
        self._originals_bucket = originals_bucket
        self._spool_root = spool_root

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
            metrics.JOBS.labels("error").inc()
            return ERROR
        with structlog.contextvars.bound_contextvars(media_id=media_id):
            return await self._claimed(media_id, upload, attempt, log)

    async def _claimed(
        self, media_id: str, upload: UploadEvent, attempt: Attempt, log: FilteringBoundLogger
    ) -> Result:
        try:
            claim = await self._store.claim(
                media_id,
                etag=upload.etag,
                size=upload.size,
                version_id=upload.version_id,
                uploaded_at=upload.event_time,
            )
        except (ClientError, BotoCoreError) as exc:
            log.warning("claim_failed", error=str(exc))
            metrics.JOBS.labels("retry").inc()
            return RETRY
        if claim.outcome is ClaimOutcome.MISSING:
            metrics.ORPHANS.inc()
            metrics.JOBS.labels("orphan").inc()
            log.warning("upload_without_item", detail="no media item: deleted, or not via the API")
            return DONE
        if claim.outcome is ClaimOutcome.DUPLICATE:
            assert claim.item is not None
            metrics.JOBS.labels("duplicate").inc()
            log.info("duplicate_delivery", status=claim.item.get("status"))
            if claim.item.get("event_pending"):
                return await self._announce(claim.item, log)
            return DONE

        source = MediaSource(
            media_id=media_id,
            owner=str((claim.item or {}).get("owner", "")),
            bucket=upload.bucket,
            key=upload.key,
            etag=upload.etag,
            size=upload.size,
            version_id=upload.version_id,
        )
        job_dir = self._spool_root / f"{media_id}-{secrets.token_hex(4)}"
        job_dir.mkdir(parents=True)
        log.info("job_started", size=upload.size, attempt=attempt.number)
        try:
            return await self._run(source, upload, job_dir, attempt, log)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(shutil.rmtree, job_dir, True)

    async def _run(
        self,
        source: MediaSource,
        upload: UploadEvent,
        job_dir: Path,
        attempt: Attempt,
        log: FilteringBoundLogger,
    ) -> Result:
        started = time.monotonic()
        original = job_dir / "original"
        try:
            await self._spool(source, original)
        except Superseded as exc:
            log.info("upload_superseded", detail=str(exc))
            metrics.JOBS.labels("superseded").inc()
            return DONE
        except TransientError as exc:
            return await self._retry_or_give_up(source, exc, None, attempt, log)

        outcome = await self._pipeline.run(
            source, original, job_dir, attempt=attempt.number, max_attempts=attempt.of, log=log
        )
        error = outcome.error
        seconds = round(time.monotonic() - started, 3)
        if error is None:
            metrics.JOBS.labels("ready").inc()
            _observe_latency(upload, "ready")
            log.info("job_ready", seconds=seconds, kind=outcome.kind)
            return DONE
        if isinstance(error, StaleJob):
            metrics.JOBS.labels("duplicate").inc()
            log.info("job_stale", detail=str(error))
            return DONE
        if isinstance(error, BadMediaError):
            log.info("job_failed_bad_media", reason=str(error), seconds=seconds)
            result = await self._fail(source, str(error), False, outcome, log)
            if result.verdict is Verdict.DONE:
                metrics.JOBS.labels("failed").inc()
                _observe_latency(upload, "failed")
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
        metrics.JOBS.labels("retry" if transient else "error").inc()
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
        """Mark the item FAILED for this upload and announce it."""
        try:
            item = await self._store.mark_failed(
                source.media_id,
                source.etag,
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
        return await self._announce(item, log)

    async def _announce(self, item: dict[str, Any], log: FilteringBoundLogger) -> Result:
        try:
            await send_media_event(self._events, self._store, item)
        except TransientError as exc:
            log.warning("event_not_sent", error=str(exc))
            return RETRY
        return DONE

    async def _spool(self, source: MediaSource, path: Path) -> None:
        """Stream this very version of the original to disk; memory stays flat whatever its size."""
        try:
            response = await self._s3.get_object(
                Bucket=source.bucket, Key=source.key, IfMatch=f'"{source.etag}"'
            )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise Superseded("the original no longer exists") from None
            if code in ("PreconditionFailed", "412"):
                raise Superseded("the original was replaced by a newer upload") from None
            raise TransientError(f"cannot read the original: {exc}") from exc
        except BotoCoreError as exc:
            raise TransientError(f"cannot read the original: {exc}") from exc
        body = response["Body"]
        try:
            async with await anyio.open_file(path, "wb") as out:
                async for chunk in body.iter_chunks(_SPOOL_CHUNK):
                    await out.write(chunk)
        except (BotoCoreError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno == _ENOSPC:
                raise TransientError("no space left to spool the original") from exc
            raise TransientError(f"reading the original failed: {exc}") from exc
        finally:
            body.close()


def _observe_latency(upload: UploadEvent, outcome: str) -> None:
    if upload.event_time is not None:
        elapsed = (utc_now() - upload.event_time).total_seconds()
        metrics.UPLOAD_TO_DONE.labels(outcome).observe(max(0.0, elapsed))
