"""An HLS ladder fetched to a folder as a player would follow it, saved so it plays locally.

The playlists are followed from the master's URL, whatever serves them (the API's own
playlists with presigned segments, or the renditions base URL); each file is saved at the
ladder's relative path and each playlist rewritten to name the saved files, so
``master.m3u8`` in the folder plays in any HLS player, offline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from urllib.parse import urljoin, urlsplit

import aiohttp
import anyio

from mediamill_core.hls import MASTER_PLAYLIST, playlist_uris, rewrite_playlist, safe_relative

Headers = Callable[[str], Mapping[str, str]]


async def download_ladder(
    http: aiohttp.ClientSession, master_url: str, folder: Path, headers: Headers
) -> int:
    """Save the ladder at ``master_url`` under ``folder``; the bytes saved. ``headers`` gives
    each URL's request headers (the API's token for its own URLs, none for presigned ones)."""
    master = await _text(http, master_url, headers)
    saved = 0
    names: dict[str, str] = {}
    for uri in playlist_uris(master):
        relative = safe_relative("", uri)  # a variant playlist inside the ladder
        names[uri] = relative
        variant_url = urljoin(master_url, uri)
        variant = await _text(http, variant_url, headers)
        target = folder / relative
        await anyio.Path(target.parent).mkdir(parents=True, exist_ok=True)
        files: dict[str, str] = {}
        for entry in playlist_uris(variant):
            url = urljoin(variant_url, entry)
            name = safe_relative("", PurePosixPath(urlsplit(url).path).name)
            files[entry] = name
            saved += await _save(http, url, target.parent / name, headers)
        text = rewrite_playlist(variant, files.__getitem__)
        await anyio.Path(target).write_text(text)
        saved += len(text.encode())
    text = rewrite_playlist(master, names.__getitem__)
    await anyio.Path(folder / MASTER_PLAYLIST).write_text(text)
    return saved + len(text.encode())


async def _text(http: aiohttp.ClientSession, url: str, headers: Headers) -> str:
    async with http.get(url, headers=headers(url)) as response:
        response.raise_for_status()
        return await response.text()


async def _save(http: aiohttp.ClientSession, url: str, target: Path, headers: Headers) -> int:
    async with http.get(url, headers=headers(url)) as response:
        response.raise_for_status()
        data = await response.read()
    await anyio.Path(target).write_bytes(data)
    return len(data)
