"""The worker's run loop: receive, run jobs concurrently, drain on shutdown.

One ``Worker`` owns the loop (arq's shape). Delivery is at least once and every effect
downstream is idempotent; this module sees to it that no message is deleted before its upload
is finished, that a worker never holds more messages than it has free job slots, and that a
stopping worker hands back what it cannot finish. Which lane fills a slot is worker.intake's
choice; what a body that is no upload event asks for, worker.bodies'.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
import structlog
from structlog.typing import FilteringBoundLogger

from mediamill_core.settings import Settings
from stages.contract import StageContext
from worker import metrics
from worker.aws import open_clients
from worker.bodies import BUILT_IN, BodyHandlers, HandlerContext, HandlerFactory
from worker.events import MalformedMessage, parse_message
from worker.health import Liveness, start_status_server
from worker.intake import Intake, receive_batch
from worker.jobs import UploadProcessor
from worker.live_photos import LivePhotos
from worker.notify import MediaEvents, Outbox
from worker.pipeline import Pipeline
from worker.publish import PublishStage
from worker.queue import InFlight, MediaQueue
from worker.registry import StageRegistry, check_timing
from worker.spool import Spool
from worker.store import MediaStore
from worker.stuck import StuckCheck, stuck_after_seconds
from worker.sweep import Sweeper
from worker.task_protection import TaskProtection, protection_minutes
from worker.verdicts import Attempt, Result, Verdict


class Worker:
    """Consumes its queues until stopped (or, in burst mode, until they are empty)."""

    def __init__(
        self,
        settings: Settings,
        registry: StageRegistry,
        *,
        burst: bool | None = None,
        log: FilteringBoundLogger | None = None,
        ecs_agent_uri: str | None = None,
        handlers: Sequence[HandlerFactory] = BUILT_IN,
        on_job_done: Callable[[int], object] | None = None,
    ) -> None:
        """``on_job_done(jobs_done)`` runs on the event loop as each message is finished with, so
        a watcher (the bench's window) sees the moment without polling; it must be quick."""
        settings.require("queue_url")
        check_timing(settings, registry)
        self.settings = settings
        self.registry = registry
        self.burst = settings.burst if burst is None else burst
        self.log = log or structlog.get_logger("mediamill.worker")
        self.liveness = Liveness(stall_seconds=settings.health_stall_seconds)
        self.status_url: str | None = None
        self.started = anyio.Event()
        self._stopping = False
        self._stop_requested_at: float | None = None
        self._stop = anyio.Event()
        self._slot_freed = anyio.Event()
        self._jobs_done = 0
        self._on_job_done = on_job_done
        self._handler_factories = tuple(handlers)
        self._handlers = BodyHandlers(())
        # Only on ECS, whose agent URI the CLI passes on: elsewhere this does nothing.
        self.protection = TaskProtection(
            ecs_agent_uri,
            minutes=protection_minutes(
                settings.task_protection_minutes, registry.critical_path_seconds()
            ),
            idle_seconds=settings.task_protection_idle_seconds,
            log=self.log,
        )

    @property
    def jobs_done(self) -> int:
        """Messages this worker has finished with, whatever became of them."""
        return self._jobs_done

    def request_stop(self) -> None:
        """Stop receiving; in-flight jobs get the drain limit to finish."""
        if not self._stopping:
            self.log.info("worker_stopping")
            self._stop_requested_at = time.monotonic()
        self._stopping = True
        self._stop.set()
        self.protection.stop()

    async def run(self, *, handle_signals: bool = False) -> None:
        base = self.settings.spool_dir or Path(os.environ.get("TMPDIR", "/tmp"))  # noqa: S108
        spool = Spool(base, self.settings.spool_budget_bytes, self.log)
        spool.open()
        try:
            async with open_clients(self.settings) as aws:
                queue = MediaQueue(aws.sqs, self.settings, self.log)
                await queue.read_redrive_policy()
                # An event's sender holds it for half the grace: the sweep waits longer.
                lock_seconds = self.settings.event_grace_seconds / 2
                store = MediaStore(
                    aws.dynamodb, self.settings.table, event_lock_seconds=lock_seconds
                )
                outbox = Outbox(MediaEvents(aws.sns, self.settings.media_topic_arn), store)
                pipeline = Pipeline(
                    self.registry,
                    cpu_limiter=anyio.CapacityLimiter(self.settings.cpu_threads),
                    grace_seconds=self.settings.stage_grace_seconds,
                )
                self.liveness.watch(queue, pipeline)
                stuck = StuckCheck(
                    dynamodb=aws.dynamodb,
                    table=self.settings.table,
                    stuck_after_seconds=stuck_after_seconds(self.settings, self.registry),
                    interval_seconds=self.settings.sweep_interval_seconds,
                    log=self.log,
                )
                processor = UploadProcessor(
                    s3=aws.s3,
                    store=store,
                    outbox=outbox,
                    pipeline=pipeline,
                    originals_bucket=self.settings.originals_bucket,
                    spool=spool,
                    lease_seconds=self.settings.visibility_timeout,
                    spool_wait_seconds=self.settings.spool_wait_seconds,
                    live=LivePhotos(aws.dynamodb, self.settings.table),
                    # The stages before publish may have it store a rendition ahead of its run.
                    stores_ahead=next(
                        (s for s in self.registry.order if isinstance(s, PublishStage)), None
                    ),
                )
                sweeper = Sweeper(
                    dynamodb=aws.dynamodb,
                    table=self.settings.table,
                    store=store,
                    outbox=outbox,
                    max_receive_count=queue.max_receive_count,
                    grace_seconds=self.settings.event_grace_seconds,
                    sqs=aws.sqs,
                    dead_letter_urls=queue.dead_letter_urls,
                    interval_seconds=self.settings.sweep_interval_seconds,
                    log=self.log,
                )
                shared = HandlerContext(
                    self.settings, aws, store, outbox, pipeline, processor, spool, lock_seconds
                )
                self._handlers = BodyHandlers([make(shared) for make in self._handler_factories])
                context = StageContext(settings=self.settings, resources={"aws": aws}, log=self.log)
                await self.registry.start(context)
                metrics.prepare(
                    self.registry.order,
                    job_slots=self.settings.concurrency,
                    cpu_slots=self.settings.cpu_threads,
                    lanes=list(queue.lanes),
                )
                runner = None
                try:
                    runner, self.status_url = await start_status_server(
                        self.liveness, self.settings.metrics_host, self.settings.metrics_port
                    )
                    self.log.info(
                        "worker_started",
                        queue_url=self.settings.queue_url,
                        backfill_queue_url=self.settings.backfill_queue_url,
                        backfill_reserved_slots=self.settings.backfill_reserved_slots,
                        concurrency=self.settings.concurrency,
                        cpu_threads=self.settings.cpu_threads,
                        stages=[stage.name for stage in self.registry.order],
                        status_url=self.status_url,
                        burst=self.burst,
                    )
                    self.started.set()
                    async with anyio.create_task_group() as services:
                        if handle_signals:
                            services.start_soon(self._watch_signals, queue)
                        services.start_soon(queue.run)
                        services.start_soon(stuck.run)
                        services.start_soon(self.protection.run)
                        services.start_soon(sweeper.run)
                        await self._consume(queue, processor, pipeline.runner.limiter)
                        services.cancel_scope.cancel()
                finally:
                    with anyio.CancelScope(shield=True):
                        await self.registry.stop()
                        if runner is not None:
                            await runner.cleanup()
        finally:
            spool.close()
            self.log.info("worker_stopped", jobs=self._jobs_done)

    async def _watch_signals(self, queue: MediaQueue) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if self._stopping:
                    self.log.warning("second_signal_cancelling_jobs", signal=signum)
                    _cancel(queue.in_flight)
                else:
                    self.log.info("signal_received", signal=signum, in_flight=len(queue.in_flight))
                    self.request_stop()

    async def _consume(
        self, queue: MediaQueue, processor: UploadProcessor, cpu: anyio.CapacityLimiter
    ) -> None:
        async with anyio.create_task_group() as jobs:

            def start(flights: list[InFlight]) -> None:
                for flight in flights:
                    queue.in_flight.add(flight)
                    # Held from here until settled: a suspect waits for every held message.
                    processor.solo.hold(flight.message_id)
                    metrics.JOBS_IN_FLIGHT.labels(flight.lane).inc()
                    self.protection.set_in_flight(queue.held)
                    jobs.start_soon(self._run_message, queue, processor, flight)

            # A receive under way is let finish (cancelling the HTTP call could strand messages
            # invisible until their timeout); what it brings while stopping is handed back.
            intake = Intake(
                queue,
                reserved_slots=self.settings.backfill_reserved_slots,
                start=start,
                wake=lambda: self._slot_freed.set(),
                receiving=processor.solo.receiving,
                batch=receive_batch(self.settings.concurrency),
                cpu_threads=self.settings.cpu_threads,
                cpu_queue=lambda: cpu.statistics().tasks_waiting,
            )
            while not self._stopping:
                self.liveness.tick("running")
                if processor.solo.active:
                    # A suspect runs alone (worker.solo): take nothing new meanwhile.
                    await processor.solo.wait_inactive(1.0)
                    continue
                if self.burst and intake.idle and not queue.in_flight:
                    # An owed delete leaves its message in flight on SQS: sent first.
                    await queue.deletes.flush()
                    if await queue.is_empty():
                        self.log.info("queue_empty_burst_done")
                        break
                free = self.settings.concurrency - len(queue.in_flight)
                if not await intake.fill(free, self._stop, jobs):
                    # A slot frees, or a receive comes back; sooner when one was held back.
                    await self._wait_for_slot(intake.look_again_in)
            self.liveness.tick("draining")
            await self._drain(queue)
        # Every job has ended: what is owed is sent within what the stop has left before ECS's
        # SIGKILL (drain and grace), but tried however long the drain took.
        started = self._stop_requested_at or time.monotonic()
        left = started + self.settings.drain_seconds + self.settings.stage_grace_seconds
        await queue.deletes.flush_at_stop(max(5.0, left - time.monotonic()))

    async def _wait_for_slot(self, seconds: float = 1.0) -> None:
        with anyio.move_on_after(seconds):
            await self._slot_freed.wait()
        self._slot_freed = anyio.Event()

    async def _drain(self, queue: MediaQueue) -> None:
        if queue.in_flight:
            self.log.info("draining", in_flight=len(queue.in_flight))
        # The drain limit counts from the stop request, not from the end of the long poll that
        # was under way then: ECS's SIGKILL comes stopTimeout after SIGTERM, whatever we did.
        started = self._stop_requested_at or time.monotonic()
        remaining = started + self.settings.drain_seconds - time.monotonic()
        with anyio.move_on_after(max(0.0, remaining)):
            while queue.in_flight:
                await self._wait_for_slot()
                self.liveness.tick()
        if queue.in_flight:
            self.log.warning("drain_limit_reached", releasing=len(queue.in_flight))
            _cancel(queue.in_flight)

    async def _run_message(
        self, queue: MediaQueue, processor: UploadProcessor, flight: InFlight
    ) -> None:
        log = self.log.bind(
            message_id=flight.message_id, receive=flight.receive_count, lane=flight.lane
        )
        try:
            with (
                anyio.CancelScope() as scope,
                structlog.contextvars.bound_contextvars(lane=flight.lane),
            ):
                flight.scope = scope
                try:
                    await self._handle(queue, processor, flight, log)
                except Exception:
                    # A bug in handling one message must never take the worker down: the
                    # message stays undeleted, is retried, and reaches the DLQ in the end.
                    log.exception("job_crashed")
                    metrics.JOBS.labels("error", flight.lane).inc()
                    if queue.is_last_try(flight):
                        metrics.DLQ_BOUND.labels("error").inc()
                    if not flight.settled:
                        await queue.retry_later(flight, None, log)
            if scope.cancelled_caught and not flight.settled:
                metrics.JOBS.labels("released", flight.lane).inc()
                log.info("job_released")
                await queue.release([flight])
        finally:
            # The slot frees now; the message is held (by the suspect gate and task protection)
            # until its delete, owed if it was done, has been answered.
            queue.in_flight.discard(flight)
            metrics.JOBS_IN_FLIGHT.labels(flight.lane).dec()
            self._jobs_done += 1
            self._slot_freed.set()
            if self._on_job_done is not None:
                self._on_job_done(self._jobs_done)

            def let_go() -> None:
                processor.solo.let_go(flight.message_id)
                self.protection.set_in_flight(queue.held)

            queue.deletes.when_deleted(flight, let_go)

    async def _handle(
        self,
        queue: MediaQueue,
        processor: UploadProcessor,
        flight: InFlight,
        log: FilteringBoundLogger,
    ) -> None:
        last_try = queue.is_last_try(flight)
        attempt = Attempt(flight.receive_count, queue.tries(flight), flight.message_id, flight.lane)
        try:
            parsed = parse_message(flight.body)
        except MalformedMessage as not_an_upload:
            try:
                offered = await self._handlers.offer(flight.body, attempt, log)
            except MalformedMessage as refused:  # of a handler's kind, but unusable
                await self._malformed(queue, flight, str(refused), last_try, log)
                return
            if offered is None:
                await self._malformed(queue, flight, str(not_an_upload), last_try, log)
            else:
                await self._settle(queue, flight, [offered], last_try, log)
            return
        if parsed.ignored:
            log.info("message_ignored", reason=parsed.ignored)
            metrics.JOBS.labels("ignored", flight.lane).inc()
            queue.delete(flight)
            return
        results = [await processor.process(upload, attempt, log) for upload in parsed.uploads]
        await self._settle(queue, flight, results, last_try, log)

    async def _malformed(
        self,
        queue: MediaQueue,
        flight: InFlight,
        reason: str,
        last_try: bool,
        log: FilteringBoundLogger,
    ) -> None:
        metrics.MALFORMED.inc()
        log.error("malformed_message", reason=reason, last_try=last_try)
        if last_try:
            metrics.DLQ_BOUND.labels("malformed").inc()
        # Never deleted: SQS moves it to the DLQ after maxReceiveCount, for a person to see.
        await queue.retry_later(flight, None, log)

    async def _settle(
        self,
        queue: MediaQueue,
        flight: InFlight,
        results: Sequence[Result],
        last_try: bool,
        log: FilteringBoundLogger,
    ) -> None:
        """Delete, retry later, requeue or leave for the DLQ, as the message's results say."""
        verdicts = {result.verdict for result in results}
        if Verdict.REQUEUE in verdicts:
            await queue.requeue(flight, log)
        elif Verdict.ERROR in verdicts or Verdict.RETRY in verdicts:
            if last_try:
                reason = "error" if Verdict.ERROR in verdicts else "transient"
                metrics.DLQ_BOUND.labels(reason).inc()
            waits = [r.retry_after for r in results if r.retry_after is not None]
            await queue.retry_later(flight, max(waits) if waits else None, log)
        else:
            queue.delete(flight)


def _cancel(flights: set[InFlight]) -> None:
    for flight in list(flights):
        if flight.scope is not None:
            flight.scope.cancel()
