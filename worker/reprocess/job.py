"""One reprocess request, start to finish: the worker's side of ``mediamill reprocess``.

``ReprocessJobs.offer`` is the one entry point: the consumer offers it each message body that
is not an upload event (it is one of worker.bodies' handlers). A request for an item that is
gone, not READY or already satisfied is acknowledged and ignored. Otherwise the item is leased
(it stays READY), the original spooled, and only the named stage runs, with the stages it
requires that the item lacks; the others' stored results (kind, metadata, the renditions the
stage reads) are handed on instead. What ran is merged into the item, and announced when it
brought new results.
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

from mediamill_core.items import iso
from mediamill_core.keys import original_key
from mediamill_core.reprocess import InvalidRequest, ReprocessRequest, parse_request
from stages.contract import BadMediaError, MediaSource, RenditionInvalid, TransientError
from worker import metrics
from worker.events import MalformedMessage
from worker.job_state import JobOutcome, JobState
from worker.notify import Outbox
from worker.originals import Originals, Superseded
from worker.pipeline import Pipeline
from worker.reprocess.plan import Plan, item_kind, not_applicable, plan, satisfied
from worker.reprocess.results import ResultWriter
from worker.reprocess.writes import ReprocessLease, ReprocessWrites, lease_of, lease_seconds_left
from worker.solo import SoloGate
from worker.spool import Reservation, Spool
from worker.verdicts import DONE, ERROR, REQUEUE, RETRY, Attempt, Result, Verdict

_LEASE_ROUNDS = 4


class ReprocessJobs:
    """Runs reprocess requests through the worker's pipeline; shared by every job."""

    def __init__(
        self,
        *,
        s3: Any,
        writes: ReprocessWrites,
        outbox: Outbox,
        pipeline: Pipeline,
        originals_bucket: str,
        renditions_bucket: str,
        spool: Spool,
        solo: SoloGate,
        lease_seconds: float,
        event_grace_seconds: float,
        spool_wait_seconds: float = 60.0,
    ) -> None:
        self._originals = Originals(s3)
        self._writes = writes
        self._pipeline = pipeline
        self._registry = pipeline.registry
        self._results = ResultWriter(s3, renditions_bucket, writes, outbox, self._registry)
        self._originals_bucket = originals_bucket
        self._scratch = spool
        self._solo = solo
        self._lease_seconds = lease_seconds
        self._event_grace = event_grace_seconds
        self._spool_wait = spool_wait_seconds

    async def offer(self, body: str, attempt: Attempt, log: FilteringBoundLogger) -> Result | None:
        """The request's verdict; None when the body is no reprocess request at all.

        Raises MalformedMessage for one that says it is but cannot be read: it goes the way of
        every malformed message, to the DLQ after its tries.
        """
        try:
            request = parse_request(body)
        except InvalidRequest as exc:
            raise MalformedMessage(str(exc)) from None
        if request is None:
            return None
        log = log.bind(
            media_id=request.media_id,
            stage=request.stage,
            mode=request.mode,
            request_id=request.request_id,
        )
        if request.stage not in self._registry.loaded:
            # Sent by a newer deploy than this worker, or a stage disabled here: another worker
            # may have it; the DLQ holds it after its tries.
            log.warning("reprocess_stage_not_installed", installed=sorted(self._registry.loaded))
            metrics.JOBS.labels("retry", attempt.lane).inc()
            return RETRY
        if self._registry[request.stage].final:
            raise MalformedMessage(f"stage {request.stage!r} is final: it runs only with an upload")
        with structlog.contextvars.bound_contextvars(media_id=request.media_id):
            return await self._requested(request, attempt, log)

    async def _requested(
        self, request: ReprocessRequest, attempt: Attempt, log: FilteringBoundLogger
    ) -> Result:
        if self._solo.active:
            metrics.JOBS.labels("requeued", attempt.lane).inc()
            return REQUEUE
        stage = self._registry[request.stage]
        lease = ReprocessLease(
            secrets.token_hex(8), attempt.message_id, request, self._lease_seconds
        )
        for _ in range(_LEASE_ROUNDS):
            try:
                item = await self._writes.get(request.media_id)
                if item is None:
                    return _ignored(log, "no item: deleted", attempt)
                reason = not_applicable(item, stage)
                if reason is not None:
                    # A re-upload being processed runs every stage anyway.
                    return _ignored(log, reason, attempt)
                reason = satisfied(item, stage, request)
                if reason is not None:
                    metrics.JOBS.labels("satisfied", attempt.lane).inc()
                    log.info("reprocess_satisfied", reason=reason)
                    return DONE
                busy = self._busy(item, request, attempt, log)
                if busy is not None:
                    return busy
                leased = await self._writes.take_lease(item, lease)
            except (ClientError, BotoCoreError) as exc:
                log.warning("reprocess_lease_failed", error=str(exc))
                metrics.JOBS.labels("retry", attempt.lane).inc()
                return RETRY
            if leased is not None:
                held = lease_of(item) or {}
                # A lease of this request that lapsed: its last try died with its worker.
                suspect = held.get("request_id") == request.request_id
                return await self._leased(request, leased, lease, suspect, attempt, log)
        log.warning("reprocess_lease_contended")
        metrics.JOBS.labels("retry", attempt.lane).inc()
        return RETRY

    def _busy(
        self,
        item: dict[str, Any],
        request: ReprocessRequest,
        attempt: Attempt,
        log: FilteringBoundLogger,
    ) -> Result | None:
        """Another reprocess holds the item, or its last event is still owed: not now."""
        if item.get("event_pending"):
            # Its sender (or the sweep) settles it within the grace; merging now would race it.
            metrics.JOBS.labels("leased", attempt.lane).inc()
            log.info("reprocess_waits_for_event")
            return Result(Verdict.RETRY, self._event_grace)
        left = lease_seconds_left(item, time.time())
        if left <= 0:
            return None
        holder = lease_of(item) or {}
        covers = holder.get("stage") == request.stage and (
            request.mode != "all" or str(holder.get("requested_at")) >= iso(request.requested_at)
        )
        if covers and holder.get("message_id") != attempt.message_id:
            # The holder's message stays until it is done, and comes back if its worker dies.
            metrics.JOBS.labels("duplicate", attempt.lane).inc()
            log.info("reprocess_duplicate_while_running")
            return DONE
        metrics.JOBS.labels("leased", attempt.lane).inc()
        log.info("reprocess_leased_elsewhere", retry_after=round(left + 1, 1))
        return Result(Verdict.RETRY, left + 1.0)

    async def _leased(
        self,
        request: ReprocessRequest,
        item: dict[str, Any],
        lease: ReprocessLease,
        suspect: bool,
        attempt: Attempt,
        log: FilteringBoundLogger,
    ) -> Result:
        steps = plan(self._registry, item, request.stage)
        stored = item.get("renditions") or {}
        need = int((item.get("source") or {}).get("size") or 0) + sum(
            int(stored[name].get("bytes") or 0) for name in steps.renditions
        )
        if suspect:
            log.warning("reprocess_suspect", detail="its last try died with its worker: alone")
        log.info("reprocess_started", run=sorted(steps.run), reused=sorted(steps.reused))
        result = RETRY
        merged = False
        try:
            async with (
                self._solo.alone(attempt.message_id) if suspect else self._solo.shared(),
                self._scratch.reserve(need, wait_seconds=self._spool_wait) as scratch,
            ):
                job_dir = self._scratch.job_dir(request.media_id)
                try:
                    async with anyio.create_task_group() as group:
                        group.start_soon(self._renew, request.media_id, lease, log)
                        try:
                            result, merged = await self._run(
                                request, item, steps, lease, job_dir, scratch, attempt, log
                            )
                        finally:
                            group.cancel_scope.cancel()
                finally:
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(shutil.rmtree, job_dir, True)
        except TransientError as exc:  # no spool space, or none ever
            log.warning("reprocess_retry", error=str(exc))
            metrics.JOBS.labels("retry", attempt.lane).inc()
            result = Result(Verdict.RETRY, exc.retry_after)
        finally:
            if not merged:
                with anyio.CancelScope(shield=True):
                    await self._release(request.media_id, lease, log)
        return result

    async def _renew(self, media_id: str, lease: ReprocessLease, log: FilteringBoundLogger) -> None:
        while True:
            await anyio.sleep(lease.seconds / 3)
            try:
                if not await self._writes.renew_lease(media_id, lease):
                    log.info("reprocess_lease_lost", detail="the item moved on")
                    return
            except (ClientError, BotoCoreError) as exc:
                log.warning("reprocess_lease_not_renewed", error=str(exc))

    async def _release(
        self, media_id: str, lease: ReprocessLease, log: FilteringBoundLogger
    ) -> None:
        try:
            await self._writes.release_lease(media_id, lease)
        except (ClientError, BotoCoreError) as exc:
            log.warning("reprocess_lease_not_released", error=str(exc), detail="it lapses")

    async def _run(
        self,
        request: ReprocessRequest,
        item: dict[str, Any],
        steps: Plan,
        lease: ReprocessLease,
        job_dir: Path,
        scratch: Reservation,
        attempt: Attempt,
        log: FilteringBoundLogger,
    ) -> tuple[Result, bool]:
        """Spool, run, merge; the verdict, and whether the merge was written."""
        started = time.monotonic()
        source = self._source(item)
        original = job_dir / "original"
        try:
            await self._originals.spool(source, original)
            state = JobState(
                kind=item_kind(item),
                records=steps.records(item, self._registry),
                not_for_kind=set(steps.not_for_kind),
            )
            await self._results.seed(state, item, steps, job_dir / "_stored")
        except Superseded as exc:
            # A re-upload is on its way: its own job runs every stage.
            log.info("reprocess_superseded", detail=str(exc))
            metrics.JOBS.labels("superseded", attempt.lane).inc()
            return DONE, False
        except TransientError as exc:
            log.warning("reprocess_retry", error=str(exc))
            metrics.JOBS.labels("retry", attempt.lane).inc()
            return Result(Verdict.RETRY, exc.retry_after), False
        outcome = await self._pipeline.run(
            source,
            original,
            job_dir,
            attempt=attempt.number,
            max_attempts=attempt.of,
            log=log,
            only=steps.run,
            state=state,
            scratch=scratch,
        )
        return await self._settle(request, item, lease, outcome, attempt, started, log)

    async def _settle(
        self,
        request: ReprocessRequest,
        item: dict[str, Any],
        lease: ReprocessLease,
        outcome: JobOutcome,
        attempt: Attempt,
        started: float,
        log: FilteringBoundLogger,
    ) -> tuple[Result, bool]:
        error = outcome.error
        final = error is None or isinstance(error, BadMediaError) or attempt.last
        if not final:
            # Ours to mend (a transient fault, a bug): try again; the item stays as it was.
            log.warning("reprocess_retry", error=f"{type(error).__name__}: {error}")
            if isinstance(error, TransientError):
                metrics.JOBS.labels("retry", attempt.lane).inc()
                return Result(Verdict.RETRY, error.retry_after), False
            metrics.JOBS.labels("error", attempt.lane).inc()
            return ERROR, False
        try:
            written = await self._results.merge(item, lease, outcome, request, log)
        except TransientError as exc:
            log.warning("reprocess_retry", error=str(exc))
            metrics.JOBS.labels("retry", attempt.lane).inc()
            return Result(Verdict.RETRY, exc.retry_after), False
        except RenditionInvalid as exc:
            # A file a stage made is not what it claims: never published, our fault.
            log.error("reprocess_rendition_invalid", error=str(exc))
            metrics.JOBS.labels("error", attempt.lane).inc()
            return ERROR, False
        if not written:
            metrics.JOBS.labels("superseded", attempt.lane).inc()
            return DONE, False
        seconds = round(time.monotonic() - started, 3)
        outcomes = {record.name: record.outcome for record in outcome.records}
        if error is None or isinstance(error, BadMediaError):
            # A required stage's failure is recorded on the READY item; it never fails it.
            metrics.JOBS.labels("reprocessed", attempt.lane).inc()
            log.info("reprocess_done", seconds=seconds, outcomes=outcomes)
            return DONE, True
        # The last try failed for our fault: recorded, and the message left for the DLQ.
        log.error("reprocess_gave_up", error=f"{type(error).__name__}: {error}", outcomes=outcomes)
        metrics.JOBS.labels(
            "retry" if isinstance(error, TransientError) else "error", attempt.lane
        ).inc()
        return (RETRY if isinstance(error, TransientError) else ERROR), True

    def _source(self, item: dict[str, Any]) -> MediaSource:
        source = item.get("source") or {}
        media_id = str(item["media_id"])
        return MediaSource(
            media_id=media_id,
            owner=str(item.get("owner", "")),
            bucket=self._originals_bucket,
            key=original_key(media_id),
            etag=str(source.get("etag", "")),
            size=int(source.get("size") or 0),
            version_id=source.get("version_id"),
            sequencer=source.get("sequencer"),
            tag=str(source.get("tag", "")),
        )


def _ignored(log: FilteringBoundLogger, reason: str, attempt: Attempt) -> Result:
    metrics.JOBS.labels("ignored", attempt.lane).inc()
    log.info("reprocess_ignored", reason=reason)
    return DONE
