"""What a demo run delivered per second, from the stack's own timestamps on each item.

The window opens at the first upload (the earliest ``created_at``, stamped by the API when the
upload is requested) and closes at the last READY (the latest ``updated_at`` of a READY item,
stamped by the worker's finishing write): the run as it happened, not the client's polling.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mediamill_core.items import parse_iso


@dataclass(frozen=True, slots=True)
class Throughput:
    """READY photos and videos, and the seconds from the first upload to the last READY."""

    photos: int
    videos: int
    media: int  # every READY item, other kinds included
    seconds: float

    def per_second(self, count: int) -> float | None:
        return count / self.seconds if self.seconds > 0 else None

    def describe(self) -> str:
        def rate(count: int, unit: str) -> str:
            value = self.per_second(count)
            return f"{value:.2f} {unit}/s" if value is not None else f"- {unit}/s"

        def count(n: int, noun: str) -> str:
            return f"{n} {noun}" if n == 1 else f"{n} {noun}s"

        return (
            f"throughput: {count(self.photos, 'photo')}, {count(self.videos, 'video')} "
            f"({self.media} READY) in "
            f"{self.seconds:.2f} s from the first upload to the last READY: "
            f"{rate(self.photos, 'photos')}, {rate(self.videos, 'videos')}, "
            f"{rate(self.media, 'media')}"
        )


def measure(items: Iterable[Mapping[str, Any]]) -> Throughput | None:
    """From items as ``GET /media/{id}`` shows them; None when none ended READY."""
    created: list[datetime] = []
    finished: list[datetime] = []
    kinds: list[str] = []
    for item in items:
        if item.get("created_at"):
            created.append(_moment(item["created_at"]))
        if item.get("status") == "READY" and item.get("updated_at"):
            finished.append(_moment(item["updated_at"]))
            kinds.append(str(item.get("kind") or ""))
    if not finished or not created:
        return None
    seconds = (max(finished) - min(created)).total_seconds()
    return Throughput(
        photos=kinds.count("image"),
        videos=kinds.count("video"),
        media=len(kinds),
        seconds=max(seconds, 0.0),
    )


def _moment(stamp: str) -> datetime:
    return parse_iso(stamp)
