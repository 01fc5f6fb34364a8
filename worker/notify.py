"""Events on the "media" SNS topic: media.processed, media.failed and media.deleted."""

from __future__ import annotations

import json
from typing import Any

from worker.items import MediaStatus, iso, utc_now

EVENT_VERSION = 1


def media_event(item: dict[str, Any]) -> dict[str, Any]:
    """The event for a finished item. Location and EXIF never travel: owner-only data."""
    failed = item.get("status") == MediaStatus.FAILED.value
    event: dict[str, Any] = {
        "type": "media.failed" if failed else "media.processed",
        "version": EVENT_VERSION,
        "media_id": item["media_id"],
        "owner": item.get("owner"),
        "status": item.get("status"),
        "kind": item.get("kind"),
        "album": item.get("album"),
        "occurred_at": iso(utc_now()),
    }
    if failed:
        event["error"] = item.get("error")
    else:
        event["renditions"] = {
            name: {
                k: v
                for k, v in rendition.items()
                if k in ("key", "content_type", "width", "height")
            }
            for name, rendition in (item.get("renditions") or {}).items()
        }
        event["warnings"] = len(item.get("warnings") or [])
        # Set by the tagging stage's moderation, stored with the rest of the item's metadata.
        metadata = item.get("metadata") or {}
        if "needs_review" in metadata:
            event["needs_review"] = metadata["needs_review"]
    return event


def deleted_event(item: dict[str, Any]) -> dict[str, Any]:
    """The event for an item its owner deleted: identity only, nothing of the media remains."""
    return {
        "type": "media.deleted",
        "version": EVENT_VERSION,
        "media_id": item["media_id"],
        "owner": item.get("owner"),
        "kind": item.get("kind"),
        "album": item.get("album"),
        "occurred_at": iso(utc_now()),
    }


def event_attributes(event: dict[str, Any]) -> dict[str, Any]:
    """SNS message attributes, so subscribers can filter on type and kind without parsing."""
    return {
        "type": {"DataType": "String", "StringValue": event["type"]},
        "kind": {"DataType": "String", "StringValue": str(event.get("kind"))},
    }


class MediaEvents:
    """Publishes finished items to the media topic (when one is configured)."""

    def __init__(self, sns: Any, topic_arn: str | None) -> None:
        self._sns = sns
        self._topic_arn = topic_arn

    async def publish(self, item: dict[str, Any]) -> bool:
        if not self._topic_arn:
            return False
        event = media_event(item)
        await self._sns.publish(
            TopicArn=self._topic_arn,
            Message=json.dumps(event),
            MessageAttributes=event_attributes(event),
        )
        return True
