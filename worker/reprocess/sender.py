"""Reprocess requests onto the backfill queue: SendMessageBatch of up to ten, at a set rate."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError

from mediamill_core.reprocess import ReprocessRequest

BATCH = 10  # SQS's limit for SendMessageBatch
_TRIES = 5
_BACKOFF_SECONDS = 0.5


class SendFailed(Exception):
    """SQS kept refusing some of a batch: the run stops, and its checkpoint lets it go on."""


class Pace:
    """At most ``rate`` messages per second, over every segment of the run."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = time.monotonic()
        self._lock = anyio.Lock()

    async def take(self, count: int) -> None:
        async with self._lock:
            wait = self._next - time.monotonic()
            if wait > 0:
                await anyio.sleep(wait)
            self._next = max(self._next, time.monotonic()) + count * self._interval


class RequestSender:
    """Sends requests through an aiobotocore SQS client."""

    def __init__(self, sqs: Any, queue_url: str, rate: float) -> None:
        self._sqs = sqs
        self._url = queue_url
        self._pace = Pace(rate)
        # Below ten a second, batches of ten would send ten in one burst each ten seconds.
        self.batch = max(1, min(BATCH, int(rate)))

    async def send(self, requests: Sequence[ReprocessRequest]) -> None:
        """Send every request or raise SendFailed; entries SQS refused are sent again."""
        await self._pace.take(len(requests))
        pending = {str(index): request for index, request in enumerate(requests)}
        problem = ""
        for attempt in range(_TRIES):
            if attempt:
                await anyio.sleep(_BACKOFF_SECONDS * 2 ** (attempt - 1))
            entries = [{"Id": key, "MessageBody": r.body()} for key, r in pending.items()]
            try:
                answer = await self._sqs.send_message_batch(QueueUrl=self._url, Entries=entries)
            except (ClientError, BotoCoreError) as exc:
                if _is_permanent(exc):
                    raise SendFailed(f"SQS refused the batch: {exc}") from exc
                problem = str(exc)
                continue
            failed = answer.get("Failed", [])
            for entry in answer.get("Successful", []):
                pending.pop(entry["Id"], None)
            if not pending:
                return
            refused = [f for f in failed if f.get("SenderFault")]
            if refused:
                first = refused[0]
                raise SendFailed(
                    f"SQS refused {len(refused)} request(s): {first.get('Code')}: "
                    f"{first.get('Message')}"
                )
            problem = "; ".join(f"{f.get('Code')}: {f.get('Message')}" for f in failed)
        raise SendFailed(f"{len(pending)} request(s) not sent after {_TRIES} tries: {problem}")


def _is_permanent(exc: ClientError | BotoCoreError) -> bool:
    """A missing queue or no permission: trying again changes nothing."""
    if not isinstance(exc, ClientError):
        return False
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return 400 <= status < 500 and status != 429
