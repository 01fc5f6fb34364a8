"""Object keys: derived from the media id and the object, never chosen by a client."""

from __future__ import annotations

import hashlib
import re
import uuid

ORIGINALS_PREFIX = "originals/"
_MEDIA_ID = re.compile(r"^[0-9a-f]{32}$")
_RENDITION_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

# Camera RAW files by extension, with the media types desktop systems (shared-mime-info) give
# them. Browsers know none of them and declare application/octet-stream, which POST /uploads
# takes for a RAW file by its name (the probe still decides from the bytes).
RAW_TYPES = {
    "dng": "image/x-adobe-dng",
    "cr2": "image/x-canon-cr2",
    "cr3": "image/x-canon-cr3",
    "nef": "image/x-nikon-nef",
    "arw": "image/x-sony-arw",
    "raf": "image/x-fuji-raf",
    "orf": "image/x-olympus-orf",
    "rw2": "image/x-panasonic-rw2",
}

EXTENSIONS = {
    **{media_type: extension for extension, media_type in RAW_TYPES.items()},
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/avif": "avif",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "application/vnd.apple.mpegurl": "m3u8",  # an HLS ladder's master (mediamill_core.hls)
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


def object_tag(etag: str, sequencer: str | None, version_id: str | None = None) -> str:
    """A short name for one object written under a key: each re-upload gets its own.

    Renditions live under it, so a job for an outdated object can never overwrite the current
    renditions, which are served with immutable caching.
    """
    identity = f"{etag}\n{sequencer or ''}\n{version_id or ''}"
    return hashlib.sha256(identity.encode()).hexdigest()[:12]


def rendition_prefix(media_id: str, tag: str) -> str:
    return f"{media_id}/{tag}/"


def rendition_key(
    media_id: str, tag: str, name: str, content_type: str, revision: str | None = None
) -> str:
    """``revision`` names a rendition that replaces one of the same name under the same tag (a
    reprocess): a new key, since the old one may be cached for a year as immutable."""
    ext = EXTENSIONS.get(content_type.split(";")[0].strip().lower(), "bin")
    name = check_rendition_name(name)
    if revision is not None:
        name = f"{name}.{check_rendition_name(revision)}"
    return f"{rendition_prefix(media_id, tag)}{name}.{ext}"
