"""An HLS ladder as stored: its file layout, content types, caching and playlist entries.

The ``hls`` stage writes the ladder as a folder (``master.m3u8``, then one folder per variant
holding ``index.m3u8``, ``init.mp4`` and ``seg_NNNNN.m4s``); publish stores it under a prefix
named after the rendition's key, keeping the relative paths, so the playlists play from
CloudFront as written. The API rewrites a variant playlist's entries when it must hand out
presigned URLs instead (relative entries do not survive a presigned query string).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import PurePosixPath
from typing import Any

HLS_CONTENT_TYPE = "application/vnd.apple.mpegurl"
MASTER_PLAYLIST = "master.m3u8"
VARIANT_PLAYLIST = "index.m3u8"
INIT_SEGMENT = "init.mp4"
SEGMENT_SUFFIX = ".m4s"
# fMP4 media segments and their init segment: video/mp4 is what players and packagers use
# (RFC 8216 names no type for them; IANA's video/iso.segment is seldom seen in practice).
SEGMENT_CONTENT_TYPE = "video/mp4"
# A playlist is re-read by players and edge caches within a minute; segments never change
# (a new upload or a reprocess writes under a new prefix).
PLAYLIST_CACHE_CONTROL = "public, max-age=60"
SEGMENT_CACHE_CONTROL = "public, max-age=31536000, immutable"
_MAP_URI = '#EXT-X-MAP:URI="'


def ladder_prefix(master_key: str) -> str:
    """The folder a ladder's files are stored under, from its master playlist's key."""
    folder, _, name = master_key.rpartition("/")
    if name != MASTER_PLAYLIST or not folder:
        raise ValueError(f"{master_key!r} is not the key of a ladder's {MASTER_PLAYLIST}")
    return f"{folder}/"


def ladder_master_key(rendition_key: str) -> str:
    """Where the master playlist goes for a rendition key such as ``<id>/<tag>/hls.m3u8``:
    ``<id>/<tag>/hls/master.m3u8``, the ladder's other files beside it."""
    stem = rendition_key.removesuffix(".m3u8")
    return f"{stem}/{MASTER_PLAYLIST}"


def held_keys(renditions: Mapping[str, Mapping[str, Any]]) -> Callable[[str], bool]:
    """Whether an S3 key is one an item's renditions hold: an entry's own key, or any file
    under a ladder entry's ``prefix`` (the entry names only its master playlist)."""
    keys = {str(entry.get("key")) for entry in renditions.values()}
    folders = tuple(str(entry["prefix"]) for entry in renditions.values() if entry.get("prefix"))
    return lambda key: key in keys or key.startswith(folders)


def content_type_of(relative: str) -> str:
    """The content type a ladder file is served with, from its name."""
    if relative.endswith(".m3u8"):
        return HLS_CONTENT_TYPE
    if relative.endswith((SEGMENT_SUFFIX, ".mp4")):
        return SEGMENT_CONTENT_TYPE
    raise ValueError(f"{relative!r} is no file of an HLS ladder")


def cache_control_of(relative: str) -> str:
    return PLAYLIST_CACHE_CONTROL if relative.endswith(".m3u8") else SEGMENT_CACHE_CONTROL


def playlist_uris(text: str) -> list[str]:
    """The URIs a playlist names, in order: its init segment (``EXT-X-MAP``), variant
    playlists and media segments alike."""
    return [uri for _, uri in _entries(text) if uri is not None]


def rewrite_playlist(text: str, url_for: Callable[[str], str]) -> str:
    """``text`` with each URI it names replaced by ``url_for(uri)``."""
    lines = []
    for line, uri in _entries(text):
        if uri is None:
            lines.append(line)
        elif line.startswith(_MAP_URI):
            lines.append(line.replace(f'"{uri}"', f'"{url_for(uri)}"', 1))
        else:
            lines.append(url_for(uri))
    return "\n".join(lines) + "\n"


def safe_relative(base: str, uri: str) -> str:
    """``uri`` resolved against the folder ``base`` of the ladder (both relative to its root);
    refuses anything outside the ladder (absolute URLs, ``..`` past the root)."""
    if "://" in uri or uri.startswith("/") or "?" in uri:
        raise ValueError(f"{uri!r} is not a relative path inside the ladder")
    parts: list[str] = []
    for part in PurePosixPath(base, uri).parts:
        if part == "..":
            if not parts:
                raise ValueError(f"{uri!r} leaves the ladder")
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def _entries(text: str) -> list[tuple[str, str | None]]:
    """Each line with the URI it holds (None for tags and blank lines)."""
    entries: list[tuple[str, str | None]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(_MAP_URI):
            entries.append((stripped, stripped[len(_MAP_URI) :].split('"', 1)[0]))
        elif stripped and not stripped.startswith("#"):
            entries.append((stripped, stripped))
        else:
            entries.append((line, None))
    return entries
