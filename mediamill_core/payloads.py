"""The payloads of the "media" SNS topic's events, shared by the worker and the API.

Each event names one fact with an ``event_id`` that is the same on every send of that fact.
"""

from __future__ import annotations

import uuid
from typing import Any

from mediamill_core.items import MediaStatus, iso, utc_now

EVENT_VERSION = 1
# uuid5 namespace of mediamill's event ids (a fixed random UUID: ids never change meaning).
_EVENT_NAMESPACE = uuid.UUID("5f2c1e0a-8d7b-4c3e-9a61-2b4f7d9e0c13")


def event_id(media_id: str, kind: str, *fact: object) -> str:
    """The same id for every send of one fact."""
    return str(uuid.uuid5(_EVENT_NAMESPACE, "/".join([media_id, kind, *map(str, fact)])))


def media_event(item: dict[str, Any]) -> dict[str, Any]:
    """The event for a finished item. Location and EXIF never travel: owner-only data."""
    failed = item.get("status") == MediaStatus.FAILED.value
    kind = "media.failed" if failed else "media.processed"
    tag = (item.get("source") or {}).get("tag")
    # A reprocess that merged new results into a READY item is a fact of its own.
    occurred = item.get("reprocessed_at") or item.get("processed_at") or iso(utc_now())
    event: dict[str, Any] = {
        "type": kind,
        "version": EVENT_VERSION,
        "event_id": event_id(item["media_id"], kind, tag, occurred),
        "media_id": item["media_id"],
        "owner": item.get("owner"),
        "status": item.get("status"),
        "kind": item.get("kind"),
        "album": item.get("album"),
        "occurred_at": occurred,
    }
    if failed:
        event["error"] = item.get("error")
        return event
    event["renditions"] = {
        name: {
            k: v for k, v in rendition.items() if k in ("key", "content_type", "width", "height")
        }
        for name, rendition in (item.get("renditions") or {}).items()
    }
    event["warnings"] = len(item.get("warnings") or [])
    metadata = item.get("metadata") or {}
    # Explicit, so that the platform can hold unmoderated media back: never a silent absence.
    moderation = metadata.get("moderation")
    ok = isinstance(moderation, dict) and "status" in moderation
    event["moderation"] = moderation if ok else {"status": "off"}
    if "needs_review" in metadata:
        event["needs_review"] = metadata["needs_review"]
    return event


def deleted_event(item: dict[str, Any]) -> dict[str, Any]:
    """The event for an item its owner deleted: identity only, nothing of the media remains."""
    occurred = item.get("deleting_at") or item.get("updated_at") or iso(utc_now())
    return {
        "type": "media.deleted",
        "version": EVENT_VERSION,
        # An id is deleted once: the fact needs nothing more to name it.
        "event_id": event_id(item["media_id"], "media.deleted"),
        "media_id": item["media_id"],
        "owner": item.get("owner"),
        "kind": item.get("kind"),
        "album": item.get("album"),
        "occurred_at": occurred,
    }


def event_attributes(event: dict[str, Any]) -> dict[str, Any]:
    """SNS message attributes, so subscribers can filter on type and kind without parsing."""
    return {
        "type": {"DataType": "String", "StringValue": event["type"]},
        "kind": {"DataType": "String", "StringValue": str(event.get("kind"))},
    }
