"""Events on the "media" SNS topic: media.processed, media.failed and media.deleted.

Each event names one fact (this item, this object, this outcome) with an ``event_id`` that is
the same on every send of that fact, and ``occurred_at`` is when the fact happened, not when it
was sent: SNS and our own retries may deliver a fact more than once, and consumers drop repeats
by ``event_id``. An item owes its event until the send is confirmed (``event_pending``); one
sender at a time holds the item's event lock, so a redelivery or the sweep never sends a second
copy while a first send is under way.
"""

from __future__ import annotations

import contextlib
import json
import random
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError
from structlog.typing import FilteringBoundLogger

from mediamill_core.payloads import event_attributes, media_event
from stages.contract import TransientError
from worker.store import MediaStore

# SNS's throttling error is not in botocore's standard retry list: we retry it ourselves.
_THROTTLED = frozenset({"Throttled", "Throttling", "ThrottlingException", "TooManyRequests"})
_THROTTLE_TRIES = 5
_THROTTLE_BASE_SECONDS = 0.2


def _is_throttled(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error.get("Code") in _THROTTLED or status == 429


class MediaEvents:
    """Publishes finished items to the media topic (when one is configured)."""

    def __init__(self, sns: Any, topic_arn: str | None) -> None:
        self._sns = sns
        self._topic_arn = topic_arn

    async def publish(self, event: dict[str, Any]) -> bool:
        if not self._topic_arn:
            return False
        for attempt in range(1, _THROTTLE_TRIES + 1):
            try:
                await self._sns.publish(
                    TopicArn=self._topic_arn,
                    Message=json.dumps(event),
                    MessageAttributes=event_attributes(event),
                )
                return True
            except ClientError as exc:
                if not _is_throttled(exc) or attempt == _THROTTLE_TRIES:
                    raise
                # Full jitter, as botocore does for the throttling it knows.
                await anyio.sleep(random.uniform(0, _THROTTLE_BASE_SECONDS * 2**attempt))
        return False  # pragma: no cover - the loop returns or raises


class Outbox:
    """Sends the event an item owes, once per fact, and then clears what it owed."""

    def __init__(self, events: MediaEvents, store: MediaStore) -> None:
        self._events = events
        self._store = store

    async def announce(
        self, item: dict[str, Any], token: str, log: FilteringBoundLogger | None = None
    ) -> bool:
        """Send the item's owed event under the event lock ``token`` (taken here if need be).

        False when another sender holds the lock or nothing is owed any more; a send that fails
        raises TransientError, leaving the event owed for a redelivery or the sweep.
        """
        media_id = item["media_id"]
        processed_at = item.get("processed_at")
        if not item.get("event_pending") or not isinstance(processed_at, str):
            return False
        lock = item.get("event_lock") or {}
        try:
            if lock.get("token") != token:
                taken = await self._store.take_event_lock(media_id, processed_at, token)
                if taken is None:
                    if log is not None:
                        log.info("event_send_in_progress_elsewhere", media_id=media_id)
                    return False
                item = taken
            await self._events.publish(media_event(item))
        except (ClientError, BotoCoreError) as exc:
            with contextlib.suppress(ClientError, BotoCoreError):
                await self._store.release_event_lock(media_id, token)
            raise TransientError(f"media event for {media_id} not sent yet: {exc}") from exc
        try:
            await self._store.clear_event_pending(media_id, processed_at)
        except (ClientError, BotoCoreError) as exc:
            # Sent, but still marked owed: the sweep sends it again, with the same event_id.
            raise TransientError(f"media event for {media_id} sent, not recorded: {exc}") from exc
        return True
