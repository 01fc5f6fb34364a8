"""The SQS consumer: receive, run jobs concurrently, heartbeat, delete, back off, drain.

One ``Worker`` owns the run loop. Delivery is at least once, so each effect downstream is
idempotent; this module's job is that no message is deleted before its upload is finished and
none is held longer than needed.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import structlog
from botocore.exceptions import BotoCoreError, ClientError
from structlog.typing import FilteringBoundLogger

from stages.contract import BadMediaError, MediaSource, StageContext, TransientError
from stages.publish import send_media_event
from worker import metrics
from worker.aws import AwsClients, open_clients
from worker.events import MalformedMessage, UploadEvent, parse_message
from worker.health import Liveness, start_status_server
from worker.items import utc_now
from worker.keys import media_id_from_key
from worker.notify import MediaEvents
from worker.pipeline import Pipeline
from worker.registry import StageRegistry
from worker.settings import SQS_MAX_VISIBILITY, Settings, SettingsError
from worker.store import ClaimOutcome, MediaStore, StaleJob

_SPOOL_CHUNK = 1024 * 1024


@dataclass(eq=False, slots=True)
class InFlight:
    """A received message while its job runs."""

    message_id: str
    receipt: str
    receive_count: int
    received_at: float = field(default_factory=time.monotonic)
    extended_at: float = field(default_factory=time.monotonic)
    scope: anyio.CancelScope | None = None
    settled: bool = False  # deleted or handed back: the heartbeat leaves it alone


class Superseded(Exception):
    """The original is gone or was replaced since the event: nothing left to do for it."""


class ForeignObject(Exception):
    """The event names an object that is not an original made through the API."""


def check_timing(settings: Settings, registry: StageRegistry) -> None:
    """Refuse settings under which a job could outlive what SQS lets a message be held."""
    longest = registry.critical_path_seconds()
    # ChangeMessageVisibility cannot extend past 12 h from the receive; keep one timeout spare.
    budget = SQS_MAX_VISIBILITY - settings.visibility_timeout
    if longest > budget:
        raise SettingsError(
            f"stage timeouts add up to {longest:g} s along the longest chain, but SQS holds a "
            f"message for at most {SQS_MAX_VISIBILITY} s and MEDIAMILL_VISIBILITY_TIMEOUT is "
            f"{settings.visibility_timeout} s: lower the stage timeouts or the visibility timeout"
        )


class Worker:
    """Consumes the media queue until stopped (or, in burst mode, until it is empty)."""

    def __init__(
        self,
        settings: Settings,
        registry: StageRegistry,
        *,
        burst: bool | None = None,
        log: FilteringBoundLogger | None = None,
    ) -> None:
        settings.require("queue_url")
        check_timing(settings, registry)
        self.settings = settings
        self.registry = registry
        self.burst = settings.burst if burst is None else burst
        self.log = log or structlog.get_logger("mediamill.worker")
        self.liveness = Liveness(stall_seconds=settings.health_stall_seconds)
        self.status_url: str | None = None
        self.started = anyio.Event()
        self.max_receive_count = settings.max_receive_count
        self._in_flight: set[InFlight] = set()
        self._stopping = False
        self._stop_event: anyio.Event | None = None
        self._slot_freed: anyio.Event | None = None
        self._spool_root: Path | None = None
        self._aws: AwsClients | None = None
        self._pipeline: Pipeline | None = None
        self._store: MediaStore | None = None
        self._events: MediaEvents | None = None
        self._jobs_done = 0
        self._pending_deletes: list[tuple[InFlight, anyio.Event]] = []
        self._delete_wanted = anyio.Event()

    # -- lifecycle -----------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop receiving; in-flight jobs get the drain limit to finish."""
        if not self._stopping:
            self.log.info("worker_stopping", in_flight=len(self._in_flight))
        self._stopping = True
        if self._stop_event is not None:
            self._stop_event.set()

    async def run(self, *, handle_signals: bool = False) -> None:
        self._stop_event = anyio.Event()
        self._slot_freed = anyio.Event()
        self._delete_wanted = anyio.Event()
        if self._stopping:
            self._stop_event.set()
        base = self.settings.spool_dir or Path(os.environ.get("TMPDIR", "/tmp"))  # noqa: S108
        self._spool_root = base / f"mediamill-{os.getpid()}-{secrets.token_hex(3)}"
        self._spool_root.mkdir(parents=True, exist_ok=True)
        runner = None
        try:
            async with open_clients(self.settings) as aws:
                self._aws = aws
                self._store = MediaStore(aws.dynamodb, self.settings.table)
                self._events = MediaEvents(aws.sns, self.settings.media_topic_arn)
                self._pipeline = Pipeline(
                    self.registry, cpu_limiter=anyio.CapacityLimiter(self.settings.cpu_threads)
                )
                await self._read_queue_policy()
                await self.registry.start(
                    StageContext(settings=self.settings, resources={"aws": aws}, log=self.log)
                )
                try:
                    runner, self.status_url = await start_status_server(
                        self.liveness, self.settings.metrics_host, self.settings.metrics_port
                    )
                    self.log.info(
                        "worker_started",
                        queue_url=self.settings.queue_url,
                        concurrency=self.settings.concurrency,
                        cpu_threads=self.settings.cpu_threads,
                        stages=[stage.name for stage in self.registry.order],
                        status_url=self.status_url,
                        burst=self.burst,
                    )
                    self.started.set()
                    async with anyio.create_task_group() as services:
                        if handle_signals:
                            services.start_soon(self._watch_signals)
                        services.start_soon(self._heartbeat)
                        services.start_soon(self._delete_batches)
                        await self._consume()
                        services.cancel_scope.cancel()
                finally:
                    with anyio.CancelScope(shield=True):
                        await self.registry.stop()
                        if runner is not None:
                            await runner.cleanup()
        finally:
            shutil.rmtree(self._spool_root, ignore_errors=True)
            self.log.info("worker_stopped", jobs=self._jobs_done)

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if self._stopping:
                    self.log.warning("second_signal_cancelling_jobs", signal=signum)
                    self._cancel_all()
                else:
                    self.log.info("signal_received", signal=signum)
                    self.request_stop()

    async def _read_queue_policy(self) -> None:
        assert self._aws is not None
        import json

        response = await self._aws.sqs.get_queue_attributes(
            QueueUrl=self.settings.queue_url, AttributeNames=["RedrivePolicy"]
        )
        policy = response.get("Attributes", {}).get("RedrivePolicy")
        if policy:
            self.max_receive_count = int(json.loads(policy)["maxReceiveCount"])
        else:
            self.log.warning(
                "queue_without_dlq",
                detail="the queue has no redrive policy: a failing message is retried forever",
            )

    # -- the receive loop ----------------------------------------------------------------

    async def _consume(self) -> None:
        assert self._stop_event is not None
        assert self._slot_freed is not None
        async with anyio.create_task_group() as jobs:
            while not self._stopping:
                self.liveness.tick("running")
                free = self.settings.concurrency - len(self._in_flight)
                if free <= 0:
                    with anyio.move_on_after(1):
                        await self._slot_freed.wait()
                    self._slot_freed = anyio.Event()
                    continue
                messages = await self._receive(min(10, free))
                if self._stopping:
                    # Received while stopping: hand them straight back rather than hold them
                    # invisible until their timeout.
                    await self._release_messages(messages)
                    break
                if not messages and self.burst and not self._in_flight and await self._empty():
                    self.log.info("queue_empty_burst_done")
                    break
                for message in messages:
                    flight = InFlight(
                        message_id=message.get("MessageId", "?"),
                        receipt=message["ReceiptHandle"],
                        receive_count=int(
                            message.get("Attributes", {}).get("ApproximateReceiveCount", "1")
                        ),
                    )
                    self._in_flight.add(flight)
                    metrics.JOBS_IN_FLIGHT.inc()
                    jobs.start_soon(self._run_message, message, flight)
            self.liveness.tick("draining")
            await self._drain()

    async def _receive(self, count: int) -> list[dict[str, Any]]:
        assert self._aws is not None
        metrics.RECEIVES.inc()
        try:
            response = await self._aws.sqs.receive_message(
                QueueUrl=self.settings.queue_url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=self.settings.receive_wait_seconds,
                VisibilityTimeout=self.settings.visibility_timeout,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            )
        except (ClientError, BotoCoreError) as exc:
            metrics.SQS_ERRORS.labels("receive").inc()
            self.log.warning("receive_failed", error=str(exc))
            assert self._stop_event is not None
            with anyio.move_on_after(min(5, self.settings.retry_base_seconds)):
                await self._stop_event.wait()
            return []
        messages: list[dict[str, Any]] = response.get("Messages", [])
        metrics.MESSAGES_RECEIVED.inc(len(messages))
        return messages

    async def _empty(self) -> bool:
        """Burst mode: nothing visible and nothing waiting out a retry delay."""
        assert self._aws is not None
        try:
            response = await self._aws.sqs.get_queue_attributes(
                QueueUrl=self.settings.queue_url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )
        except (ClientError, BotoCoreError) as exc:
            metrics.SQS_ERRORS.labels("get_queue_attributes").inc()
            self.log.warning("queue_attributes_failed", error=str(exc))
            return False
        counts = response.get("Attributes", {})
        return all(int(value) == 0 for value in counts.values())

    async def _drain(self) -> None:
        if self._in_flight:
            self.log.info("draining", in_flight=len(self._in_flight))
        with anyio.move_on_after(self.settings.drain_seconds):
            while self._in_flight:
                assert self._slot_freed is not None
                with anyio.move_on_after(1):
                    await self._slot_freed.wait()
                self._slot_freed = anyio.Event()
                self.liveness.tick()
        if self._in_flight:
            self.log.warning("drain_limit_reached", releasing=len(self._in_flight))
            self._cancel_all()

    def _cancel_all(self) -> None:
        for flight in list(self._in_flight):
            if flight.scope is not None:
                flight.scope.cancel()

    # -- one message ---------------------------------------------------------------------

    async def _run_message(self, message: dict[str, Any], flight: InFlight) -> None:
        log = self.log.bind(message_id=flight.message_id, receive=flight.receive_count)
        try:
            with anyio.CancelScope() as scope:
                flight.scope = scope
                try:
                    await self._handle(message, flight, log)
                except Exception:
                    # A bug in handling one message must never take the worker down: the
                    # message stays undeleted, is retried, and reaches the DLQ in the end.
                    log.exception("job_crashed")
                    metrics.JOBS.labels("error").inc()
                    if flight.receive_count >= self.max_receive_count:
                        metrics.DLQ_BOUND.labels("error").inc()
                    if not flight.settled:
                        await self._retry_later(flight, None, log)
            if scope.cancelled_caught and not flight.settled:
                flight.settled = True
                with anyio.CancelScope(shield=True):
                    metrics.JOBS.labels("released").inc()
                    log.info("job_released")
                    await self._change_visibility([flight], 0)
                    metrics.MESSAGES_RELEASED.inc()
        finally:
            self._in_flight.discard(flight)
            metrics.JOBS_IN_FLIGHT.dec()
            self._jobs_done += 1
            assert self._slot_freed is not None
            self._slot_freed.set()

    async def _handle(
        self, message: dict[str, Any], flight: InFlight, log: FilteringBoundLogger
    ) -> None:
        last_try = flight.receive_count >= self.max_receive_count
        try:
            parsed = parse_message(message.get("Body", ""))
        except MalformedMessage as exc:
            metrics.MALFORMED.inc()
            log.error("malformed_message", reason=str(exc), last_try=last_try)
            if last_try:
                metrics.DLQ_BOUND.labels("malformed").inc()
            # Never deleted: SQS moves it to the DLQ after maxReceiveCount, for a person to see.
            await self._retry_later(flight, None, log)
            return
        if parsed.ignored:
            log.info("message_ignored", reason=parsed.ignored)
            metrics.JOBS.labels("ignored").inc()
            await self._delete(flight, log)
            return

        outcomes = []
        for upload in parsed.uploads:
            outcomes.append(await self._process_upload(upload, flight, log))
        retry_after = [value for kind, value in outcomes if kind == "retry"]
        if any(kind == "error" for kind, _ in outcomes):
            if last_try:
                metrics.DLQ_BOUND.labels("error").inc()
            await self._retry_later(flight, None, log)
        elif retry_after:
            if last_try:
                metrics.DLQ_BOUND.labels("transient").inc()
            await self._retry_later(flight, max((v or 0.0) for v in retry_after) or None, log)
        else:
            await self._delete(flight, log)

    async def _process_upload(
        self, upload: UploadEvent, flight: InFlight, log: FilteringBoundLogger
    ) -> tuple[str, float | None]:
        """Run one upload; returns ("done" | "retry" | "error", retry_after)."""
        assert self._store is not None
        media_id = media_id_from_key(upload.key)
        log = log.bind(media_id=media_id, key=upload.key)
        if upload.bucket != self.settings.originals_bucket or media_id is None:
            log.error(
                "foreign_object",
                bucket=upload.bucket,
                detail="not an original made through the API; left for the DLQ",
            )
            metrics.JOBS.labels("error").inc()
            return "error", None
        structlog.contextvars.bind_contextvars(media_id=media_id)
        try:
            return await self._process_media(media_id, upload, flight, log)
        finally:
            structlog.contextvars.unbind_contextvars("media_id")

    async def _process_media(
        self, media_id: str, upload: UploadEvent, flight: InFlight, log: FilteringBoundLogger
    ) -> tuple[str, float | None]:
        assert self._store is not None
        assert self._events is not None
        last_try = flight.receive_count >= self.max_receive_count
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
            return "retry", None
        if claim.outcome is ClaimOutcome.MISSING:
            metrics.ORPHANS.inc()
            metrics.JOBS.labels("orphan").inc()
            log.warning("upload_without_item", detail="no media item: deleted, or not via the API")
            return "done", None
        if claim.outcome is ClaimOutcome.DUPLICATE:
            assert claim.item is not None
            metrics.JOBS.labels("duplicate").inc()
            log.info("duplicate_delivery", status=claim.item.get("status"))
            if claim.item.get("event_pending"):
                try:
                    await send_media_event(self._events, self._store, claim.item)
                except TransientError as exc:
                    log.warning("event_not_sent", error=str(exc))
                    return "retry", None
            return "done", None

        item = claim.item or {}
        source = MediaSource(
            media_id=media_id,
            owner=str(item.get("owner", "")),
            bucket=upload.bucket,
            key=upload.key,
            etag=upload.etag,
            size=upload.size,
            version_id=upload.version_id,
        )
        assert self._spool_root is not None
        job_dir = self._spool_root / f"{media_id}-{secrets.token_hex(4)}"
        job_dir.mkdir(parents=True)
        started = time.monotonic()
        log.info("job_started", size=upload.size, attempt=flight.receive_count)
        try:
            return await self._run_job(source, upload, job_dir, flight, log, last_try, started)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(shutil.rmtree, job_dir, True)

    async def _run_job(
        self,
        source: MediaSource,
        upload: UploadEvent,
        job_dir: Path,
        flight: InFlight,
        log: FilteringBoundLogger,
        last_try: bool,
        started: float,
    ) -> tuple[str, float | None]:
        assert self._pipeline is not None
        original = job_dir / "original"
        try:
            await self._spool(source, original)
        except Superseded as exc:
            log.info("upload_superseded", detail=str(exc))
            metrics.JOBS.labels("superseded").inc()
            return "done", None
        except TransientError as exc:
            log.warning("spool_failed", error=str(exc))
            return await self._give_up_or_retry(source, exc, None, log, last_try, flight)

        outcome = await self._pipeline.run(
            source,
            original,
            job_dir,
            attempt=flight.receive_count,
            max_attempts=self.max_receive_count,
            log=log,
        )
        error = outcome.error
        seconds = time.monotonic() - started
        if error is None:
            metrics.JOBS.labels("ready").inc()
            self._observe_latency(upload, "ready")
            log.info("job_ready", seconds=round(seconds, 3), kind=outcome.kind)
            return "done", None
        if isinstance(error, StaleJob):
            metrics.JOBS.labels("duplicate").inc()
            log.info("job_stale", detail=str(error))
            return "done", None
        if isinstance(error, BadMediaError):
            log.info("job_failed_bad_media", reason=str(error), seconds=round(seconds, 3))
            return await self._fail_item(source, upload, str(error), False, outcome, log)
        return await self._give_up_or_retry(source, error, outcome, log, last_try, flight)

    async def _give_up_or_retry(
        self,
        source: MediaSource,
        error: BaseException,
        outcome: Any,
        log: FilteringBoundLogger,
        last_try: bool,
        flight: InFlight,
    ) -> tuple[str, float | None]:
        transient = isinstance(error, TransientError)
        if transient:
            log.warning("job_retry", error=str(error), last_try=last_try)
        else:
            log.error("job_error", error=f"{type(error).__name__}: {error}", exc_info=error)
        if last_try:
            # The message goes to the DLQ for an operator; the item must not look stuck.
            reason = (
                f"processing failed after {flight.receive_count} attempts: "
                f"{error if transient else type(error).__name__ + ': ' + str(error)}"
            )
            await self._fail_item(source, None, reason, True, outcome, log)
        metrics.JOBS.labels("retry" if transient else "error").inc()
        if transient:
            assert isinstance(error, TransientError)
            return "retry", error.retry_after
        return "error", None

    async def _fail_item(
        self,
        source: MediaSource,
        upload: UploadEvent | None,
        reason: str,
        retryable: bool,
        outcome: Any,
        log: FilteringBoundLogger,
    ) -> tuple[str, float | None]:
        assert self._store is not None
        assert self._events is not None
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
            await send_media_event(self._events, self._store, item)
        except StaleJob as exc:
            log.info("job_stale", detail=str(exc))
            return "done", None
        except TransientError as exc:
            log.warning("event_not_sent", error=str(exc))
            return "retry", None
        except (ClientError, BotoCoreError) as exc:
            log.warning("mark_failed_failed", error=str(exc))
            return "retry", None
        if upload is not None:
            metrics.JOBS.labels("failed").inc()
            self._observe_latency(upload, "failed")
        return "done", None

    def _observe_latency(self, upload: UploadEvent, outcome: str) -> None:
        if upload.event_time is not None:
            elapsed = (utc_now() - upload.event_time).total_seconds()
            metrics.UPLOAD_TO_DONE.labels(outcome).observe(max(0.0, elapsed))

    async def _spool(self, source: MediaSource, path: Path) -> None:
        """Stream the original to disk (memory stays flat whatever its size)."""
        assert self._aws is not None
        try:
            response = await self._aws.s3.get_object(
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
            if isinstance(exc, OSError) and exc.errno == 28:  # ENOSPC: other tasks may free space
                raise TransientError("no space left to spool the original") from exc
            raise TransientError(f"reading the original failed: {exc}") from exc
        finally:
            body.close()

    # -- SQS calls -----------------------------------------------------------------------

    def _retry_delay(self, receive_count: int, retry_after: float | None) -> int:
        """Exponential in the receive count, with jitter; a stage's retry_after wins."""
        base = self.settings.retry_base_seconds * 2 ** max(0, receive_count - 1)
        delay = retry_after if retry_after is not None else base * random.uniform(0.8, 1.2)
        return int(max(1, min(delay, self.settings.retry_max_seconds)))

    async def _retry_later(
        self, flight: InFlight, retry_after: float | None, log: FilteringBoundLogger
    ) -> None:
        delay = self._retry_delay(flight.receive_count, retry_after)
        log.info("retry_scheduled", in_seconds=delay)
        flight.settled = True  # the heartbeat must not undo the backoff
        await self._change_visibility([flight], delay)

    async def _delete(self, flight: InFlight, log: FilteringBoundLogger) -> None:
        """Queue the message for a batched delete; the job keeps its slot until it is done."""
        flight.settled = True
        done = anyio.Event()
        self._pending_deletes.append((flight, done))
        self._delete_wanted.set()
        await done.wait()

    async def _delete_batches(self) -> None:
        """DeleteMessageBatch for jobs finishing together, up to 10 a call."""
        assert self._aws is not None
        while True:
            await self._delete_wanted.wait()
            self._delete_wanted = anyio.Event()
            if len(self._pending_deletes) < 10:
                await anyio.sleep(0.02)  # let jobs finishing together share the call
            batch = self._pending_deletes[:10]
            del self._pending_deletes[:10]
            if self._pending_deletes:
                self._delete_wanted.set()
            entries = [
                {"Id": str(i), "ReceiptHandle": flight.receipt}
                for i, (flight, _) in enumerate(batch)
            ]
            try:
                response = await self._aws.sqs.delete_message_batch(
                    QueueUrl=self.settings.queue_url, Entries=entries
                )
                failed = response.get("Failed", [])
            except (ClientError, BotoCoreError) as exc:
                failed = [{"Id": entry["Id"], "Code": str(exc)} for entry in entries]
            # A failed delete means one more delivery, which finds the item finished: harmless.
            for failure in failed:
                metrics.SQS_ERRORS.labels("delete").inc()
                self.log.warning(
                    "delete_failed",
                    message_id=batch[int(failure["Id"])][0].message_id,
                    code=failure.get("Code"),
                )
            metrics.DELETES.inc(len(batch) - len(failed))
            for _, done in batch:
                done.set()

    async def _change_visibility(self, flights: Sequence[InFlight], seconds: int) -> None:
        """ChangeMessageVisibilityBatch in chunks of 10; a final change settles the message."""
        assert self._aws is not None
        for start in range(0, len(flights), 10):
            chunk = flights[start : start + 10]
            entries = [
                {"Id": str(i), "ReceiptHandle": f.receipt, "VisibilityTimeout": seconds}
                for i, f in enumerate(chunk)
            ]
            try:
                response = await self._aws.sqs.change_message_visibility_batch(
                    QueueUrl=self.settings.queue_url, Entries=entries
                )
            except (ClientError, BotoCoreError) as exc:
                metrics.SQS_ERRORS.labels("change_visibility").inc()
                self.log.warning("change_visibility_failed", error=str(exc), count=len(chunk))
                continue
            for failure in response.get("Failed", []):
                metrics.SQS_ERRORS.labels("change_visibility").inc()
                self.log.warning(
                    "change_visibility_entry_failed",
                    message_id=chunk[int(failure["Id"])].message_id,
                    code=failure.get("Code"),
                )

    async def _release_messages(self, messages: list[dict[str, Any]]) -> None:
        flights = [
            InFlight(
                message_id=m.get("MessageId", "?"), receipt=m["ReceiptHandle"], receive_count=0
            )
            for m in messages
        ]
        if flights:
            with anyio.CancelScope(shield=True):
                await self._change_visibility(flights, 0)
            metrics.MESSAGES_RELEASED.inc(len(flights))

    async def _heartbeat(self) -> None:
        """Keep in-flight messages invisible: extend each every third of the timeout."""
        timeout = self.settings.visibility_timeout
        tick = max(0.2, min(5.0, timeout / 6))
        while True:
            await anyio.sleep(tick)
            now = time.monotonic()
            due = [
                f for f in self._in_flight if not f.settled and now - f.extended_at >= timeout / 3
            ]
            if not due:
                continue
            for flight in due:
                flight.extended_at = now
            await self._change_visibility(due, timeout)
            metrics.VISIBILITY_EXTENSIONS.inc(len(due))
