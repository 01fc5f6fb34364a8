"""Owed deletes: a finished job's message is deleted in a batch, without the job waiting for it.

A job whose upload is done owes its message's delete and gives up its slot at once. The
batcher sends a ``DeleteMessageBatch`` per queue when ten are owed there (SQS's limit), or when
the oldest has waited the linger, so the jobs finishing within it share one call. A settled
message is no longer extended by the heartbeat, so each delete is also sent while the last
extension still holds: by half the visibility timeout after it, whatever the linger.

Whoever counts what the worker holds (the suspect gate, task protection, a stopping worker)
asks to hear of a delete once SQS has answered it (``when_deleted``); ``flush`` sends every owed
delete at once and returns when all are answered, before a worker stops or a burst worker looks
for an empty queue.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError
from structlog.typing import FilteringBoundLogger

from worker import metrics

if TYPE_CHECKING:
    from worker.queue import InFlight

BATCH = 10  # SQS's limit for DeleteMessageBatch and ChangeMessageVisibilityBatch


@dataclass(eq=False, slots=True)
class _Owed:
    flight: InFlight
    send_by: float  # monotonic
    then: list[Callable[[], None]] = field(default_factory=list)


class DeleteBatcher:
    """The deletes the worker owes, per queue, and the one task that sends them."""

    def __init__(
        self,
        sqs: Any,
        *,
        visibility_timeout: int,
        linger_seconds: float,
        log: FilteringBoundLogger,
    ) -> None:
        self._sqs = sqs
        self._visibility_timeout = visibility_timeout
        self._linger = linger_seconds
        self._log = log
        # Every delete owed until SQS answers it; ``_waiting`` holds those not yet sent, per
        # queue, oldest first.
        self._owed: dict[InFlight, _Owed] = {}
        self._waiting: dict[str, list[_Owed]] = {}
        self._wake = anyio.Event()
        self._answered = anyio.Event()

    def __len__(self) -> int:
        return len(self._owed)

    def owe(self, flight: InFlight) -> None:
        """The message's upload is done: delete it soon, the caller does not wait."""
        # The heartbeat leaves a settled message alone: its receipt must reach SQS while the
        # last extension still holds, with half the timeout to spare for the call itself.
        deadline = flight.extended_at + self._visibility_timeout / 2
        owed = _Owed(flight, min(time.monotonic() + self._linger, deadline))
        self._owed[flight] = owed
        self._waiting.setdefault(flight.queue_url, []).append(owed)
        self._wake.set()

    def when_deleted(self, flight: InFlight, callback: Callable[[], None]) -> None:
        """Call ``callback`` once SQS has answered the message's delete (now, if none is owed)."""
        owed = self._owed.get(flight)
        if owed is None:
            callback()
        else:
            owed.then.append(callback)

    async def run(self) -> None:
        """Send each queue's batch when it is full or due, until cancelled."""
        while True:
            # A fresh event before looking: an owe() while a call is under way is not missed.
            wake = self._wake = anyio.Event()
            now = time.monotonic()
            due = self._take(now)
            if due is not None:
                await self._send(*due)
                continue
            send_by = min((_send_by(w) for w in self._waiting.values() if w), default=math.inf)
            with anyio.move_on_after(send_by - now):
                await wake.wait()

    async def flush(self) -> None:
        """Send every owed delete now; return once SQS has answered each of them."""
        while self._owed:
            taken = self._take(None)
            if taken is not None:
                await self._send(*taken)
            else:  # the rest are in a call the batcher has under way
                await self._answered.wait()

    async def flush_at_stop(self, seconds: float) -> None:
        """``flush``, shielded from a cancellation, for at most ``seconds``; what SQS has not
        answered by then is logged (those messages come back, and find their uploads finished)."""
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + seconds
            await self.flush()
        if scope.cancelled_caught:
            self._log.warning("owed_deletes_not_sent", owed=len(self._owed), seconds=seconds)

    def _take(self, now: float | None) -> tuple[str, list[_Owed]] | None:
        """Up to ten owed deletes of one queue, full or due by ``now`` (None: any), taken off
        the waiting."""
        for url, waiting in self._waiting.items():
            if waiting and (now is None or len(waiting) >= BATCH or _send_by(waiting) <= now):
                batch, self._waiting[url] = waiting[:BATCH], waiting[BATCH:]
                return url, batch
        return None

    async def _send(self, url: str, batch: list[_Owed]) -> None:
        entries = [{"Id": str(i), "ReceiptHandle": o.flight.receipt} for i, o in enumerate(batch)]
        try:
            response = await self._sqs.delete_message_batch(QueueUrl=url, Entries=entries)
            failed = response.get("Failed", [])
        except (ClientError, BotoCoreError) as exc:
            failed = [{"Id": entry["Id"], "Code": str(exc)} for entry in entries]
        except BaseException:
            # Cancelled with the call under way: still owed (a second delete of a message
            # is harmless), so a flush that follows sends them again rather than waiting.
            self._waiting[url] = batch + self._waiting.get(url, [])
            raise
        # A failed delete means one more delivery, which finds the item finished: harmless.
        for failure in failed:
            metrics.SQS_ERRORS.labels("delete").inc()
            self._log.warning(
                "delete_failed",
                message_id=batch[int(failure["Id"])].flight.message_id,
                code=failure.get("Code"),
            )
        metrics.DELETES.inc(len(batch) - len(failed))
        for owed in batch:
            del self._owed[owed.flight]
        for owed in batch:
            for callback in owed.then:
                callback()
        self._answered.set()
        self._answered = anyio.Event()


def _send_by(waiting: list[_Owed]) -> float:
    """When a queue's batch is due: its earliest (an old extension can bring a later one ahead)."""
    return min(owed.send_by for owed in waiting)
