"""Events on the "media" SNS topic: media.processed and media.failed."""

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
        if "needs_review" in item:
            event["needs_review"] = item["needs_review"]
    return event


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
            MessageAttributes={
                "type": {"DataType": "String", "StringValue": event["type"]},
                "kind": {"DataType": "String", "StringValue": str(event.get("kind"))},
            },
        )
        return True
