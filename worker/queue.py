"""The SQS side of the worker: receive, heartbeat, owed deletes, backoff and release.

The worker consumes one or two lanes: ``media``, the queue S3 announces uploads on, and, when
``MEDIAMILL_BACKFILL_QUEUE_URL`` is set, ``backfill`` (reprocessing and other bulk work). Which
lane fills a free job slot is worker.intake's choice; here every in-flight message remembers its
lane and its queue, and each delete, heartbeat, release, retry and requeue acts on the queue the
message came from.

A message is *settled* once its delete is owed (worker.deletes sends it in a batch), it is
handed back (visibility 0) or put off for a retry; from then on the heartbeat leaves it alone.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
from botocore.exceptions import BotoCoreError, ClientError
from structlog.typing import FilteringBoundLogger

from mediamill_core.settings import Settings
from worker import metrics
from worker.deletes import BATCH as _BATCH
from worker.deletes import DeleteBatcher

LaneName = Literal["media", "backfill"]
MEDIA: LaneName = "media"
BACKFILL: LaneName = "backfill"


@dataclass(slots=True)
class Lane:
    """One queue the worker consumes, with what its redrive policy says."""

    name: LaneName
    url: str
    max_receive_count: int
    dead_letter_url: str | None = None
    # Since when every ReceiveMessage on it has failed (None: the last one returned), and why.
    failing_since: float | None = None
    error: str = ""


@dataclass(eq=False, slots=True)
class InFlight:
    """A received message while its job runs."""

    message_id: str
    receipt: str
    receive_count: int
    lane: LaneName
    queue_url: str
    body: str = ""
    extended_at: float = field(default_factory=time.monotonic)
    scope: anyio.CancelScope | None = None
    settled: bool = False

    @classmethod
    def from_message(cls, message: dict[str, Any], lane: Lane) -> InFlight:
        return cls(
            message_id=message.get("MessageId", "?"),
            receipt=message["ReceiptHandle"],
            receive_count=int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
            lane=lane.name,
            queue_url=lane.url,
            body=message.get("Body", ""),
        )


def _by_queue(flights: Sequence[InFlight]) -> dict[str, list[InFlight]]:
    """Batch calls name one queue: messages grouped by the queue each came from."""
    grouped: dict[str, list[InFlight]] = {}
    for flight in flights:
        grouped.setdefault(flight.queue_url, []).append(flight)
    return grouped


class MediaQueue:
    """The worker's queues, consumed at least once and never held longer than needed."""

    def __init__(self, sqs: Any, settings: Settings, log: FilteringBoundLogger) -> None:
        settings.require("queue_url")
        assert settings.queue_url is not None
        self._sqs = sqs
        self._settings = settings
        self._log = log
        # Media first: the order the worker reads, reports and empties them in.
        self.lanes: dict[LaneName, Lane] = {
            MEDIA: Lane(MEDIA, settings.queue_url, settings.max_receive_count)
        }
        if settings.backfill_queue_url:
            self.lanes[BACKFILL] = Lane(
                BACKFILL, settings.backfill_queue_url, settings.max_receive_count
            )
        self.in_flight: set[InFlight] = set()
        # One visibility change at a time: a release (0 s) sent while a heartbeat's extension of
        # the same message is under way would be overtaken by it, and the message would stay
        # hidden for a whole timeout instead of going to another worker at once.
        self._visibility = anyio.Lock()
        self.deletes = DeleteBatcher(
            sqs,
            visibility_timeout=settings.visibility_timeout,
            linger_seconds=settings.delete_linger_seconds,
            log=log,
        )

    @property
    def max_receive_count(self) -> int:
        """The most receives any lane allows: a message with tries left is never given up."""
        return max(lane.max_receive_count for lane in self.lanes.values())

    @property
    def dead_letter_urls(self) -> list[str]:
        """Each lane's dead-letter queue, where the redrive policy names one."""
        return [lane.dead_letter_url for lane in self.lanes.values() if lane.dead_letter_url]

    @property
    def held(self) -> int:
        """Messages in flight or with their delete owed: what the worker still answers for."""
        return len(self.in_flight) + len(self.deletes)

    def in_flight_on(self, lane: LaneName) -> int:
        return sum(1 for flight in self.in_flight if flight.lane == lane)

    async def read_redrive_policy(self) -> None:
        """Learn each lane's maxReceiveCount and DLQ from the queue itself.

        This also proves every queue reachable at start: a task given a wrong URL or role fails
        there, where a deployment's circuit breaker sees it.
        """
        for lane in self.lanes.values():
            response = await self._sqs.get_queue_attributes(
                QueueUrl=lane.url, AttributeNames=["RedrivePolicy"]
            )
            policy = response.get("Attributes", {}).get("RedrivePolicy")
            if policy:
                redrive = json.loads(policy)
                lane.max_receive_count = int(redrive["maxReceiveCount"])
                lane.dead_letter_url = await self._queue_url_of(str(redrive["deadLetterTargetArn"]))
            else:
                self._log.warning(
                    "queue_without_dlq",
                    lane=lane.name,
                    detail="the queue has no redrive policy: a failing message is retried forever",
                )

    async def _queue_url_of(self, arn: str) -> str | None:
        """arn:aws:sqs:REGION:ACCOUNT:NAME to its URL (the sweep peeks at the DLQ)."""
        parts = arn.split(":")
        if len(parts) != 6:
            return None
        try:
            answer = await self._sqs.get_queue_url(
                QueueName=parts[5], QueueOwnerAWSAccountId=parts[4]
            )
        except (ClientError, BotoCoreError) as exc:
            self._log.warning("dead_letter_queue_unknown", arn=arn, error=str(exc))
            return None
        return str(answer["QueueUrl"])

    def tries(self, flight: InFlight) -> int:
        """How many receives the message's own queue allows it."""
        return self.lanes[flight.lane].max_receive_count

    def is_last_try(self, flight: InFlight) -> bool:
        return flight.receive_count >= self.tries(flight)

    async def receive(
        self,
        count: int,
        stop: anyio.Event,
        *,
        lane: LaneName = MEDIA,
        wait_seconds: int | None = None,
    ) -> list[InFlight]:
        """Poll one lane for up to ``count`` messages (never more than the free job slots).

        ``wait_seconds`` is the long poll's wait (MEDIAMILL_RECEIVE_WAIT_SECONDS by default). A
        failed receive on the media lane pauses a little, so a broken queue is not called in a
        tight loop; on the backfill lane the media queue's long poll that follows is the pause.
        """
        queue = self.lanes[lane]
        metrics.RECEIVES.labels(lane).inc()
        wait = self._settings.receive_wait_seconds if wait_seconds is None else wait_seconds
        try:
            response = await self._sqs.receive_message(
                QueueUrl=queue.url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=wait,
                VisibilityTimeout=self._settings.visibility_timeout,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            )
        except (ClientError, BotoCoreError) as exc:
            metrics.SQS_ERRORS.labels("receive").inc()
            self._log.warning("receive_failed", lane=lane, error=str(exc))
            if queue.failing_since is None:
                queue.failing_since = time.monotonic()
            queue.error = str(exc)
            if lane == MEDIA:
                with anyio.move_on_after(min(5, self._settings.retry_base_seconds)):
                    await stop.wait()
            return []
        queue.failing_since = None  # returned, even if with no message: SQS answers us
        messages = [InFlight.from_message(m, queue) for m in response.get("Messages", [])]
        metrics.MESSAGES_RECEIVED.labels(lane).inc(len(messages))
        return messages

    def health_problems(self) -> list[str]:
        """Media receives failing for MEDIAMILL_HEALTH_RECEIVE_SECONDS: credentials, IAM, the queue.

        Counted from the first failure, not the last success: a worker whose slots are all
        busy does not receive at all, and is not unhealthy for it. Only the media lane counts:
        a task whose backfill queue fails still serves fresh uploads, and replacing it would
        only interrupt them (the failures are logged and counted in mediamill_sqs_errors_total).
        """
        media = self.lanes[MEDIA]
        if media.failing_since is None:
            return []
        failing = time.monotonic() - media.failing_since
        if failing < self._settings.health_receive_seconds:
            return []
        return [
            f"no SQS receive has succeeded for {failing:.0f} s "
            f"(limit {self._settings.health_receive_seconds:g} s): {media.error}"
        ]

    async def is_empty(self) -> bool:
        """Nothing visible, in flight or delayed on any lane (burst mode's stop condition)."""
        for lane in self.lanes.values():
            try:
                response = await self._sqs.get_queue_attributes(
                    QueueUrl=lane.url,
                    AttributeNames=[
                        "ApproximateNumberOfMessages",
                        "ApproximateNumberOfMessagesNotVisible",
                        "ApproximateNumberOfMessagesDelayed",
                    ],
                )
            except (ClientError, BotoCoreError) as exc:
                metrics.SQS_ERRORS.labels("get_queue_attributes").inc()
                self._log.warning("queue_attributes_failed", lane=lane.name, error=str(exc))
                return False
            counts = response.get("Attributes", {})
            if any(int(value) != 0 for value in counts.values()):
                return False
        return True

    def retry_delay(self, receive_count: int, retry_after: float | None) -> int:
        """Exponential in the receive count, with jitter; a stage's retry_after wins."""
        base = self._settings.retry_base_seconds * 2 ** max(0, receive_count - 1)
        delay = retry_after if retry_after is not None else base * random.uniform(0.8, 1.2)
        return int(max(1, min(delay, self._settings.retry_max_seconds)))

    async def retry_later(
        self, flight: InFlight, retry_after: float | None, log: FilteringBoundLogger
    ) -> None:
        """Not deleted: visible again after the backoff, and in the DLQ after the last try."""
        delay = self.retry_delay(flight.receive_count, retry_after)
        log.info("retry_scheduled", in_seconds=delay)
        flight.settled = True
        await self._change_visibility([flight], delay)

    async def release(self, flights: Sequence[InFlight]) -> None:
        """Hand messages back at once (visibility 0) so another worker takes them now."""
        for flight in flights:
            flight.settled = True
        if flights:
            with anyio.CancelScope(shield=True):
                await self._change_visibility(flights, 0)
            metrics.MESSAGES_RELEASED.inc(len(flights))

    def delete(self, flight: InFlight) -> None:
        """Owe the message's delete: sent in a batch soon (worker.deletes), not waited for."""
        flight.settled = True
        self.deletes.owe(flight)

    async def requeue(self, flight: InFlight, log: FilteringBoundLogger) -> None:
        """A copy of the message back on its own queue, then this one deleted: no try is spent.

        Sent before the delete, so a failure between the two leaves a duplicate (which the claim
        recognises), never nothing; a failed send hands the message back as it is instead.
        """
        try:
            await self._sqs.send_message(QueueUrl=flight.queue_url, MessageBody=flight.body)
        except (ClientError, BotoCoreError) as exc:
            metrics.SQS_ERRORS.labels("send_message").inc()
            log.warning("requeue_failed", error=str(exc), detail="handed back as it is")
            await self.release([flight])
            return
        log.info("message_requeued")
        self.delete(flight)

    async def run(self) -> None:
        """The heartbeat and the delete batcher, until cancelled."""
        async with anyio.create_task_group() as group:
            group.start_soon(self._heartbeat)
            group.start_soon(self.deletes.run)

    async def _heartbeat(self) -> None:
        """Keep in-flight messages invisible: extend each every third of the timeout."""
        timeout = self._settings.visibility_timeout
        tick = max(0.2, min(5.0, timeout / 6))
        while True:
            await anyio.sleep(tick)
            now = time.monotonic()
            due = [
                f for f in self.in_flight if not f.settled and now - f.extended_at >= timeout / 3
            ]
            if not due:
                continue
            for flight in due:
                flight.extended_at = now
            extended = await self._change_visibility(due, timeout, unsettled_only=True)
            metrics.VISIBILITY_EXTENSIONS.inc(extended)

    async def _change_visibility(
        self, flights: Sequence[InFlight], seconds: int, *, unsettled_only: bool = False
    ) -> int:
        """How many were changed; ``unsettled_only``: not those settled while this waited (a
        heartbeat's extension never follows their release, retry or delete)."""
        async with self._visibility:
            if unsettled_only:
                flights = [flight for flight in flights if not flight.settled]
            for url, on_queue in _by_queue(flights).items():
                for start in range(0, len(on_queue), _BATCH):
                    await self._change_batch(url, on_queue[start : start + _BATCH], seconds)
        return len(flights)

    async def _change_batch(self, url: str, chunk: Sequence[InFlight], seconds: int) -> None:
        entries = [
            {"Id": str(i), "ReceiptHandle": f.receipt, "VisibilityTimeout": seconds}
            for i, f in enumerate(chunk)
        ]
        try:
            response = await self._sqs.change_message_visibility_batch(
                QueueUrl=url, Entries=entries
            )
        except (ClientError, BotoCoreError) as exc:
            metrics.SQS_ERRORS.labels("change_visibility").inc()
            self._log.warning("change_visibility_failed", error=str(exc), count=len(chunk))
            return
        for failure in response.get("Failed", []):
            metrics.SQS_ERRORS.labels("change_visibility").inc()
            self._log.warning(
                "change_visibility_entry_failed",
                message_id=chunk[int(failure["Id"])].message_id,
                code=failure.get("Code"),
            )
