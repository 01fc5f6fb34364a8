"""What ``GET /media/{id}`` (and each entry of ``GET /media``) shows the owner of an item."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

# Fields shown as stored; everything else the item holds stays internal (owner, source, ...).
_PLAIN_FIELDS = (
    "media_id",
    "status",
    "kind",
    "filename",
    "content_type",
    "size",
    "album",
    "title",
    "description",
    "created_at",
    "updated_at",
)
# Shown only on the halves of a Live Photo (see mediamill_core.live): each names the other.
_PAIR_FIELDS = ("live_video_id", "companion_of")


def media_view(item: Mapping[str, Any], rendition_url: Callable[[str], str]) -> dict[str, Any]:
    """The item as JSON for its owner; renditions get presigned GETs from ``rendition_url``."""
    view: dict[str, Any] = {name: item.get(name) for name in _PLAIN_FIELDS}
    view.update(
        metadata=item.get("metadata") or {},
        location=item.get("location"),
        renditions={
            name: _rendition_view(rendition, rendition_url)
            for name, rendition in sorted((item.get("renditions") or {}).items())
        },
        stages=item.get("stages") or [],
        warnings=item.get("warnings") or [],
        error=item.get("error"),
    )
    view.update({name: item[name] for name in _PAIR_FIELDS if item.get(name)})
    return view


def _rendition_view(
    rendition: Mapping[str, Any], rendition_url: Callable[[str], str]
) -> dict[str, Any]:
    view = {
        "url": rendition_url(rendition["key"]),
        "content_type": rendition.get("content_type"),
        "width": rendition.get("width"),
        "height": rendition.get("height"),
        "bytes": rendition.get("bytes"),
    }
    if "variants" in rendition:  # an HLS ladder: what its master playlist lists
        view["variants"] = rendition["variants"]
    return view
