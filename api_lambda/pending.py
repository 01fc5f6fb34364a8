"""Uploads declared but not yet received: when they expire, and the caps on them per owner.

An upload is *open* while its presigned POST or part URLs are valid. Its PENDING_UPLOAD item
*expires* a grace period later, at ``upload_expires_at``, the table's TTL attribute: the grace
covers bytes sent just before the URLs expired whose S3 event reaches a worker late (a stalled
or backed-up queue). The worker's claim and a completed multipart upload remove the attribute,
so only an item whose bytes never arrived is ever swept. DynamoDB deletes expired items within
days, not at once: until then the API treats them as gone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from api_lambda.errors import TooManyRequests
from mediamill_core.items import MediaStatus

PENDING_GRACE = timedelta(days=1)


def upload_expires_at(urls_expire: datetime) -> int:
    """The TTL (epoch seconds) of an item whose upload URLs expire at ``urls_expire``."""
    return math.ceil((urls_expire + PENDING_GRACE).timestamp())


def is_expired(item: Mapping[str, Any], now: datetime) -> bool:
    """An upload whose bytes never arrived, past its grace: as good as deleted."""
    expires = item.get("upload_expires_at")
    # Items written before the attribute became a TTL hold a date string: they never expire.
    return (
        item.get("status") == MediaStatus.PENDING_UPLOAD.value
        and isinstance(expires, int)
        and expires <= now.timestamp()
    )


def open_after(now: datetime) -> int:
    """An item with an ``upload_expires_at`` above this still has valid upload URLs."""
    return math.floor((now + PENDING_GRACE).timestamp())


@dataclass(frozen=True, slots=True)
class PendingLimits:
    max_uploads: int
    max_bytes: int
    # The longest upload URL lifetime: an upload started earlier than this is closed.
    longest_urls: timedelta


@dataclass(frozen=True, slots=True)
class OpenUploads:
    """The owner's open uploads: how many, their declared bytes, when the first one closes."""

    count: int
    bytes: int
    first_closes_at: int | None  # epoch seconds

    @classmethod
    def of(cls, items: Iterable[Mapping[str, Any]]) -> OpenUploads:
        sizes, closing = [], []
        for item in items:
            sizes.append(int(item.get("size") or 0))
            closing.append(int(item["upload_expires_at"]) - int(PENDING_GRACE.total_seconds()))
        return cls(len(sizes), sum(sizes), min(closing, default=None))


def check_room(limits: PendingLimits, open_uploads: OpenUploads, size: int, now: datetime) -> None:
    """Nothing, or TooManyRequests naming the limit a new upload of ``size`` bytes would pass."""
    headers = {}
    if open_uploads.first_closes_at is not None:
        # When the earliest open upload closes (or sooner, if one finishes): worth a retry.
        wait = max(1, open_uploads.first_closes_at - math.floor(now.timestamp()))
        headers["retry-after"] = str(wait)
    advice = "finish, abort or delete one, or retry when one has expired"
    if open_uploads.count >= limits.max_uploads:
        raise TooManyRequests(
            f"{open_uploads.count} uploads are open, the limit of open uploads is "
            f"{limits.max_uploads}; {advice}",
            code="too_many_open_uploads",
            headers=headers,
        )
    if open_uploads.bytes + size > limits.max_bytes:
        raise TooManyRequests(
            f"{open_uploads.bytes} bytes are pending in open uploads; {size} more would pass "
            f"the limit of pending bytes, {limits.max_bytes}; {advice}",
            code="too_many_pending_bytes",
            headers=headers,
        )
