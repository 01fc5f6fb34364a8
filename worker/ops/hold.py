"""Reading every message of a queue once, without taking any away from it.

A receive with visibility 0 leaves the message visible, so the next receive may well return the
same ten again: there is no paging through a queue that way. Instead each page is received
under a short hold (the visibility timeout), so the next receive returns other messages, and
everything held is handed back with visibility 0 when the command is done with it, or when it
fails. A command that dies without handing back leaves the messages hidden for the hold at most.
Held messages are kept hidden while the walk goes on (the hold is renewed half way), so a long
walk never meets its first pages again. Every receive counts in the message's
ApproximateReceiveCount: in a dead-letter queue that count includes such reads.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

HOLD_SECONDS = 60
_BATCH = 10  # ReceiveMessage, ChangeMessageVisibilityBatch and DeleteMessageBatch take 10 at most
# Long polling asks every SQS server (a short poll samples some, and may answer empty while
# messages wait); one second is enough to tell an empty queue from one with messages.
_WAIT_SECONDS = 1
# A standard queue may deliver a copy of a held message: one page of copies only is not the end.
_PAGES_WITHOUT_NEWS = 2


@dataclass(slots=True)
class _Held:
    receipts: list[str]
    deleted: bool = False


@dataclass(slots=True)
class HeldMessages:
    """The messages of one queue, each returned once and hidden while held; released on exit."""

    sqs: SQSClient
    queue_url: str
    hold_seconds: int = HOLD_SECONDS
    # Receipts SQS refused to hide longer or hand back: those reappear when their hold lapses.
    visibility_failures: int = field(default=0, init=False)
    _held: dict[str, _Held] = field(default_factory=dict, init=False)
    _renewed_at: float = field(default_factory=time.monotonic, init=False)

    def __enter__(self) -> HeldMessages:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()

    def pages(self, limit: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """Pages of messages not returned before, until no visible message is left (or limit)."""
        returned = 0
        dull = 0
        while limit is None or returned < limit:
            self._renew_if_due()
            want = _BATCH if limit is None else min(_BATCH, limit - returned)
            answer = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=want,
                VisibilityTimeout=self.hold_seconds,
                WaitTimeSeconds=_WAIT_SECONDS,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            messages = answer.get("Messages", [])
            if not messages:
                return
            fresh = []
            for message in messages:
                message_id = message["MessageId"]
                held = self._held.get(message_id)
                if held is None:
                    self._held[message_id] = _Held([message["ReceiptHandle"]])
                    fresh.append(dict(message))
                else:
                    held.receipts.append(message["ReceiptHandle"])
            if not fresh:
                dull += 1
                if dull >= _PAGES_WITHOUT_NEWS:
                    return
                continue
            dull = 0
            returned += len(fresh)
            yield fresh

    def delete(self, message_ids: list[str]) -> dict[str, str]:
        """Delete held messages (every copy received); returns the ids that failed, with why."""
        entries = [
            (message_id, receipt)
            for message_id in message_ids
            for receipt in self._held[message_id].receipts
        ]
        failed: dict[str, str] = {}
        for start in range(0, len(entries), _BATCH):
            chunk = entries[start : start + _BATCH]
            answer = self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": r} for i, (_, r) in enumerate(chunk)],
            )
            for failure in answer.get("Failed", []):
                message_id = chunk[int(failure["Id"])][0]
                failed[message_id] = f"{failure.get('Code')}: {failure.get('Message', '')}".strip()
        for message_id in message_ids:
            if message_id not in failed:
                self._held[message_id].deleted = True
        return failed

    def release(self) -> None:
        """Hand back at once (visibility 0) every held message that was not deleted."""
        self._change_visibility(0)
        self._held.clear()

    def _renew_if_due(self) -> None:
        if time.monotonic() - self._renewed_at >= self.hold_seconds / 2:
            self._change_visibility(self.hold_seconds)
            self._renewed_at = time.monotonic()

    def _change_visibility(self, seconds: int) -> None:
        receipts = [r for held in self._held.values() if not held.deleted for r in held.receipts]
        for start in range(0, len(receipts), _BATCH):
            chunk = receipts[start : start + _BATCH]
            answer = self.sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": seconds}
                    for i, r in enumerate(chunk)
                ],
            )
            # An older receipt of a message received twice may be refused: it reappears anyway
            # when the hold lapses.
            self.visibility_failures += len(answer.get("Failed", []))
