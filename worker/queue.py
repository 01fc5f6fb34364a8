"""The SQS side of the worker: receive, heartbeat, batched deletes, backoff and release.

A message is *settled* once it is deleted, handed back (visibility 0) or put off for a retry;
from then on the heartbeat leaves it alone.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError
from structlog.typing import FilteringBoundLogger

from mediamill_core.settings import Settings
from worker import metrics

_BATCH = 10  # SQS's limit for DeleteMessageBatch and ChangeMessageVisibilityBatch


@dataclass(eq=False, slots=True)
class InFlight:
    """A received message while its job runs."""

    message_id: str
    receipt: str
    receive_count: int
    body: str = ""
    extended_at: float = field(default_factory=time.monotonic)
    scope: anyio.CancelScope | None = None
    settled: bool = False

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> InFlight:
        return cls(
            message_id=message.get("MessageId", "?"),
            receipt=message["ReceiptHandle"],
            receive_count=int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
            body=message.get("Body", ""),
        )


class MediaQueue:
    """One SQS queue, consumed at least once and never held longer than needed."""

    def __init__(self, sqs: Any, settings: Settings, log: FilteringBoundLogger) -> None:
        self._sqs = sqs
        self._url = settings.queue_url
        self._settings = settings
        self._log = log
        self.max_receive_count = settings.max_receive_count
        self.dead_letter_url: str | None = None
        self.in_flight: set[InFlight] = set()
        self._pending_deletes: list[tuple[InFlight, anyio.Event]] = []
        self._delete_wanted = anyio.Event()
        # Since when every ReceiveMessage has failed (None: the last one returned), and why.
        self._receive_failing_since: float | None = None
        self._receive_error = ""

    async def read_redrive_policy(self) -> None:
        """Learn maxReceiveCount from the queue itself (also proves the queue is reachable)."""
        response = await self._sqs.get_queue_attributes(
            QueueUrl=self._url, AttributeNames=["RedrivePolicy"]
        )
        policy = response.get("Attributes", {}).get("RedrivePolicy")
        if policy:
            redrive = json.loads(policy)
            self.max_receive_count = int(redrive["maxReceiveCount"])
            self.dead_letter_url = await self._queue_url_of(str(redrive["deadLetterTargetArn"]))
        else:
            self._log.warning(
                "queue_without_dlq",
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

    def is_last_try(self, flight: InFlight) -> bool:
        return flight.receive_count >= self.max_receive_count

    async def receive(self, count: int, stop: anyio.Event) -> list[InFlight]:
        """Long-poll for up to ``count`` messages (never more than the free job slots)."""
        metrics.RECEIVES.inc()
        try:
            response = await self._sqs.receive_message(
                QueueUrl=self._url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=self._settings.receive_wait_seconds,
                VisibilityTimeout=self._settings.visibility_timeout,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            )
        except (ClientError, BotoCoreError) as exc:
            metrics.SQS_ERRORS.labels("receive").inc()
            self._log.warning("receive_failed", error=str(exc))
            if self._receive_failing_since is None:
                self._receive_failing_since = time.monotonic()
            self._receive_error = str(exc)
            with anyio.move_on_after(min(5, self._settings.retry_base_seconds)):
                await stop.wait()
            return []
        self._receive_failing_since = None  # returned, even if with no message: SQS answers us
        messages = [InFlight.from_message(m) for m in response.get("Messages", [])]
        metrics.MESSAGES_RECEIVED.inc(len(messages))
        return messages

    def health_problems(self) -> list[str]:
        """Receives failing for MEDIAMILL_HEALTH_RECEIVE_SECONDS: credentials, IAM, the queue.

        Counted from the first failure, not the last success: a worker whose slots are all
        busy does not receive at all, and is not unhealthy for it.
        """
        if self._receive_failing_since is None:
            return []
        failing = time.monotonic() - self._receive_failing_since
        if failing < self._settings.health_receive_seconds:
            return []
        return [
            f"no SQS receive has succeeded for {failing:.0f} s "
            f"(limit {self._settings.health_receive_seconds:g} s): {self._receive_error}"
        ]

    async def is_empty(self) -> bool:
        """Nothing visible, in flight or delayed (burst mode's stop condition)."""
        try:
            response = await self._sqs.get_queue_attributes(
                QueueUrl=self._url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )
        except (ClientError, BotoCoreError) as exc:
            metrics.SQS_ERRORS.labels("get_queue_attributes").inc()
            self._log.warning("queue_attributes_failed", error=str(exc))
            return False
        counts = response.get("Attributes", {})
        return all(int(value) == 0 for value in counts.values())

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

    async def delete(self, flight: InFlight) -> None:
        """Queue the message for a batched delete and wait until the batch is sent."""
        flight.settled = True
        done = anyio.Event()
        self._pending_deletes.append((flight, done))
        self._delete_wanted.set()
        await done.wait()

    async def requeue(self, flight: InFlight, log: FilteringBoundLogger) -> None:
        """A copy of the message back on the queue, then this one deleted: no try is spent.

        Sent before the delete, so a failure between the two leaves a duplicate (which the claim
        recognises), never nothing; a failed send hands the message back as it is instead.
        """
        try:
            await self._sqs.send_message(QueueUrl=self._url, MessageBody=flight.body)
        except (ClientError, BotoCoreError) as exc:
            metrics.SQS_ERRORS.labels("send_message").inc()
            log.warning("requeue_failed", error=str(exc), detail="handed back as it is")
            await self.release([flight])
            return
        log.info("message_requeued")
        await self.delete(flight)

    async def run(self) -> None:
        """The heartbeat and the delete batcher, until cancelled."""
        async with anyio.create_task_group() as group:
            group.start_soon(self._heartbeat)
            group.start_soon(self._delete_batches)

    async def _delete_batches(self) -> None:
        while True:
            await self._delete_wanted.wait()
            self._delete_wanted = anyio.Event()
            if len(self._pending_deletes) < _BATCH:
                await anyio.sleep(0.02)  # let jobs finishing together share the call
            batch = self._pending_deletes[:_BATCH]
            del self._pending_deletes[:_BATCH]
            if self._pending_deletes:
                self._delete_wanted.set()
            entries = [
                {"Id": str(i), "ReceiptHandle": flight.receipt}
                for i, (flight, _) in enumerate(batch)
            ]
            try:
                response = await self._sqs.delete_message_batch(QueueUrl=self._url, Entries=entries)
                failed = response.get("Failed", [])
            except (ClientError, BotoCoreError) as exc:
                failed = [{"Id": entry["Id"], "Code": str(exc)} for entry in entries]
            # A failed delete means one more delivery, which finds the item finished: harmless.
            for failure in failed:
                metrics.SQS_ERRORS.labels("delete").inc()
                self._log.warning(
                    "delete_failed",
                    message_id=batch[int(failure["Id"])][0].message_id,
                    code=failure.get("Code"),
                )
            metrics.DELETES.inc(len(batch) - len(failed))
            for _, done in batch:
                done.set()

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
            await self._change_visibility(due, timeout)
            metrics.VISIBILITY_EXTENSIONS.inc(len(due))

    async def _change_visibility(self, flights: Sequence[InFlight], seconds: int) -> None:
        for start in range(0, len(flights), _BATCH):
            chunk = flights[start : start + _BATCH]
            entries = [
                {"Id": str(i), "ReceiptHandle": f.receipt, "VisibilityTimeout": seconds}
                for i, f in enumerate(chunk)
            ]
            try:
                response = await self._sqs.change_message_visibility_batch(
                    QueueUrl=self._url, Entries=entries
                )
            except (ClientError, BotoCoreError) as exc:
                metrics.SQS_ERRORS.labels("change_visibility").inc()
                self._log.warning("change_visibility_failed", error=str(exc), count=len(chunk))
                continue
            for failure in response.get("Failed", []):
                metrics.SQS_ERRORS.labels("change_visibility").inc()
                self._log.warning(
                    "change_visibility_entry_failed",
                    message_id=chunk[int(failure["Id"])].message_id,
                    code=failure.get("Code"),
                )
