"""The demo's downloads: one item's renditions to its folder, and a Live Photo's late ``motion``.

A Live Photo is two uploads; the second half to be READY pairs them just after, so the still's
``motion`` rendition may come after the demo first saw it READY. When both halves are in one
run, the demo waits for the pairing and then fetches what the still gained.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from mediamill_core.hls import HLS_CONTENT_TYPE, MASTER_PLAYLIST
from mediamill_core.keys import EXTENSIONS
from mediamill_core.live import COMPANION_OF, LIVE_VIDEO_ID

if TYPE_CHECKING:
    from worker.dev.demo import DemoClient, DemoResult


async def download_renditions(client: DemoClient, result: DemoResult, folder: Path) -> None:
    """Every rendition of ``result.item`` not downloaded yet, into ``folder``."""
    have = {entry["name"] for entry in result.renditions}
    for name, rendition in result.item.get("renditions", {}).items():
        if name in have:
            continue
        if rendition.get("content_type") == HLS_CONTENT_TYPE:
            target = folder / name / MASTER_PLAYLIST
            downloaded = await client.download_ladder(rendition["url"], target.parent)
        else:
            ext = EXTENSIONS.get(rendition.get("content_type") or "", "bin")
            target = folder / f"{name}.{ext}"
            downloaded = await client.download(rendition["url"], target)
        result.renditions.append(
            {
                "name": name,
                "path": str(target),
                "content_type": rendition.get("content_type"),
                "width": rendition.get("width"),
                "height": rendition.get("height"),
                "bytes": downloaded,
            }
        )


async def settle_live_photos(
    client: DemoClient, results: list[DemoResult], out: Path, deadline: float
) -> None:
    """For each still and clip of one Live Photo uploaded in this run: wait until they are
    paired (or the deadline), then show both as they are now, the still with its ``motion``."""
    halves: dict[str, list[DemoResult]] = {}
    for result in results:
        identifier = (result.item.get("metadata") or {}).get("content_identifier")
        if result.status == "READY" and identifier:
            halves.setdefault(str(identifier), []).append(result)
    for pair in halves.values():
        if sorted(str(r.item.get("kind")) for r in pair) != ["image", "video"]:
            continue  # a half without its other half here: nothing to wait for
        for result in pair:
            await _paired(client, result, deadline)
            await download_renditions(client, result, out / (result.folder or result.file.name))


async def _paired(client: DemoClient, result: DemoResult, deadline: float) -> None:
    assert result.media_id is not None
    while True:
        result.item = await client.media(result.media_id)
        if result.item.get(LIVE_VIDEO_ID) or result.item.get(COMPANION_OF):
            return
        if time.monotonic() >= deadline:
            return
        await anyio.sleep(0.25)


def pair_fields(item: dict[str, Any]) -> dict[str, Any]:
    """What the demo's JSON row shows of a pair: each half's link to the other, if any."""
    return {name: item[name] for name in (LIVE_VIDEO_ID, COMPANION_OF) if item.get(name)}
