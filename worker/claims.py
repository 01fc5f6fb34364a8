"""Claiming an item for one object: who may work on it, and which object is the newest.

Pure decisions on an item as read, and the object and source an upload event names;
worker.store makes the conditional writes that act on them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from mediamill_core.items import MediaStatus
from mediamill_core.keys import object_tag
from stages.contract import MediaSource
from worker.events import UploadEvent


class ClaimContended(Exception):
    """The item kept changing under the claim: try the message again later."""


class ClaimOutcome(enum.Enum):
    CLAIMED = "claimed"
    DUPLICATE = "duplicate"  # already finished for this very object
    MISSING = "missing"  # no item: deleted, or the object was not made through the API
    OUTDATED = "outdated"  # the item already has a newer object than this event's
    LEASED = "leased"  # another job holds this very object: it must not run twice


@dataclass(frozen=True, slots=True)
class StoredObject:
    """The object an event announces, as the item records it."""

    etag: str
    size: int
    version_id: str | None
    sequencer: str | None
    order: str | None  # the sequencer padded to compare as text; None when unknown
    tag: str

    def as_item(self) -> dict[str, Any]:
        return {
            "etag": self.etag,
            "size": self.size,
            "version_id": self.version_id,
            "sequencer": self.sequencer,
            "order": self.order,
            "tag": self.tag,
        }


@dataclass(frozen=True, slots=True)
class Lease:
    """Who works on an item: a token per job, and the message that carries it."""

    token: str
    message_id: str
    seconds: float


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: ClaimOutcome
    item: dict[str, Any] | None
    # The item held another object before: its renditions (another key prefix) are now stale.
    replaced: bool = False
    # Taken over from a try whose lease lapsed: that try ended with no word (its worker died).
    suspect: bool = False
    retry_after: float | None = None


class Decision(enum.Enum):
    """What a claim does when it may take the item (or must first learn the order)."""

    FIRST = "first"
    NEWER = "newer"
    RECLAIM = "reclaim"
    MINE = "mine"
    UNKNOWN_ORDER = "unknown_order"


def lease_left(item: dict[str, Any], now: float) -> float:
    """Seconds until the item's lease lapses (0 when there is none or it has lapsed)."""
    lease = item.get("lease") or {}
    expires = lease.get("expires")
    return max(0.0, float(expires) - now) if isinstance(expires, int | float) else 0.0


def sent_on(item: dict[str, Any]) -> bool:
    """Its last try, a suspect, went elsewhere as a copy while another suspect had the worker:
    still a suspect, but no death of its own (see worker.solo)."""
    lease = item.get("lease") or {}
    return item.get("status") == MediaStatus.PROCESSING.value and lease.get("sent_on") is True


def died(item: dict[str, Any]) -> bool:
    """Its last try left its lease to lapse (a try that ends in any other way gives it up or
    sends it on): the worker died with it."""
    lease = item.get("lease")
    return item.get("status") == MediaStatus.PROCESSING.value and bool(lease) and not sent_on(item)


def _same_object(source: dict[str, Any], obj: StoredObject) -> bool:
    if source.get("tag") == obj.tag:
        return True
    # Without a usable sequencer the ETag says it: the same bytes give the same renditions.
    unordered = source.get("order") is None or obj.order is None or source.get("order") == obj.order
    return unordered and source.get("etag") == obj.etag


def decide(
    item: dict[str, Any], obj: StoredObject, lease: Lease, now: float
) -> ClaimOutcome | Decision:
    """What a claim for ``obj`` should do with the item as read."""
    status = item.get("status")
    if status == MediaStatus.DELETING.value:
        return ClaimOutcome.MISSING
    source = item.get("source") or {}
    if not source.get("tag") and not source.get("etag"):
        return Decision.FIRST
    if _same_object(source, obj):
        held = (item.get("lease") or {}).get("token")
        if status == MediaStatus.PROCESSING.value:
            if held == lease.token:
                return Decision.MINE
            return ClaimOutcome.LEASED if lease_left(item, now) > 0 else Decision.RECLAIM
        if status == MediaStatus.FAILED.value and item.get("error_retryable") is True:
            return Decision.RECLAIM
        if status == MediaStatus.PENDING_UPLOAD.value:
            return Decision.RECLAIM
        return ClaimOutcome.DUPLICATE
    ours, theirs = obj.order, source.get("order")
    if ours is not None and isinstance(theirs, str) and ours != theirs:
        return Decision.NEWER if ours > theirs else ClaimOutcome.OUTDATED
    return Decision.UNKNOWN_ORDER


def killed_worker_reason(attempts: int) -> str:
    """Why an upload that kept killing its worker ended FAILED (the claim's and the sweep's)."""
    return (
        "processing never finished: the worker stopped (killed, out of memory or a crashing "
        f"decoder) on each of its attempts ({attempts} seen), so the upload was set aside"
    )


def stored_object(upload: UploadEvent) -> StoredObject:
    """The object an upload event announces, as a claim records it."""
    return StoredObject(
        etag=upload.etag,
        size=upload.size,
        version_id=upload.version_id,
        sequencer=upload.sequencer,
        order=upload.order,
        tag=object_tag(upload.etag, upload.order, upload.version_id),
    )


def source_of(
    media_id: str, item: dict[str, Any] | None, upload: UploadEvent, obj: StoredObject
) -> MediaSource:
    return MediaSource(
        media_id=media_id,
        owner=str((item or {}).get("owner", "")),
        bucket=upload.bucket,
        key=upload.key,
        etag=upload.etag,
        size=upload.size,
        version_id=upload.version_id,
        sequencer=upload.sequencer,
        tag=obj.tag,
    )
