"""Object keys: derived from the media id only, never chosen by a client."""

from __future__ import annotations

import re
import uuid

ORIGINALS_PREFIX = "originals/"
_MEDIA_ID = re.compile(r"^[0-9a-f]{32}$")
_RENDITION_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/avif": "avif",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "application/json": "json",
    "text/plain": "txt",
}


def new_media_id() -> str:
    return uuid.uuid4().hex


def is_media_id(value: str) -> bool:
    return bool(_MEDIA_ID.fullmatch(value))


def original_key(media_id: str) -> str:
    return f"{ORIGINALS_PREFIX}{media_id}"


def media_id_from_key(key: str) -> str | None:
    """The media id an originals key names, or None when the key is not one of ours."""
    if not key.startswith(ORIGINALS_PREFIX):
        return None
    media_id = key[len(ORIGINALS_PREFIX) :]
    return media_id if is_media_id(media_id) else None


def check_rendition_name(name: str) -> str:
    if not _RENDITION_NAME.fullmatch(name):
        raise ValueError(f"rendition name {name!r} must be 1-64 characters of a-z, 0-9, '_' or '-'")
    return name


def rendition_key(media_id: str, name: str, content_type: str) -> str:
    ext = EXTENSIONS.get(content_type.split(";")[0].strip().lower(), "bin")
    return f"{media_id}/{check_rendition_name(name)}.{ext}"
