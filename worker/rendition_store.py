"""The renditions bucket as publish and a reprocess use it: check, upload, list, fetch, remove.

An HLS ladder is one rendition of many files: its master playlist's key is the entry's ``key``
and the folder holding the rest is its ``prefix`` (see :mod:`mediamill_core.hls`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError

from mediamill_core.hls import (
    HLS_CONTENT_TYPE,
    cache_control_of,
    content_type_of,
    ladder_master_key,
    ladder_prefix,
)
from stages.contract import Rendition, TransientError
from stages.photo.verify import verify_rendition

_DELETE_BATCH = 1000  # DeleteObjects takes at most this many keys
_CHUNK = 1024 * 1024
# Below this a rendition goes up in one PutObject; from it on, in parts. The transfer manager's
# own threshold (boto3's TransferConfig default), so nothing changes for large files.
SINGLE_PUT_BYTES = 8 * 1024 * 1024
# A ladder's files go up this many at a time: hundreds of small segments per variant.
_LADDER_PARALLEL = 8


class RenditionStore:
    """Renditions in S3 through an aiobotocore client; every failure is ours: TransientError."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self.bucket = bucket

    @staticmethod
    async def check(renditions: Iterable[Rendition]) -> None:
        """A file is never published unchecked (renditions are cached for a year): those the
        stage that made them did not check are checked here, in a thread."""
        unchecked = [rendition for rendition in renditions if not rendition.checked]
        if unchecked:
            await anyio.to_thread.run_sync(_verify_all, unchecked)

    async def upload(
        self, media_id: str, rendition: Rendition, key: str, cache_control: str
    ) -> dict[str, Any]:
        """Upload one rendition under ``key``; the item's entry for it."""
        if rendition.content_type == HLS_CONTENT_TYPE:
            return await self._upload_ladder(media_id, rendition, key)
        size = rendition.path.stat().st_size
        await self._put(
            rendition.path,
            key,
            size,
            content_type=rendition.content_type,
            cache_control=cache_control,
            metadata={"media-id": media_id, "rendition": rendition.name},
        )
        return _entry(rendition, {"key": key, "bytes": size})

    async def _upload_ladder(self, media_id: str, rendition: Rendition, key: str) -> dict[str, Any]:
        """Every file of the ladder whose master playlist is ``rendition.path``, under the
        folder ``key`` names, at the same relative paths: the playlists play as written."""
        master_key = ladder_master_key(key)
        prefix = ladder_prefix(master_key)
        root = rendition.path.parent
        files = await anyio.to_thread.run_sync(_ladder_files, root)
        limiter = anyio.CapacityLimiter(_LADDER_PARALLEL)
        metadata = {"media-id": media_id, "rendition": rendition.name}

        async def put(path: Path, size: int) -> None:
            relative = path.relative_to(root).as_posix()
            async with limiter:
                await self._put(
                    path,
                    f"{prefix}{relative}",
                    size,
                    content_type=content_type_of(relative),
                    cache_control=cache_control_of(relative),
                    metadata=metadata,
                )

        async with anyio.create_task_group() as group:
            for path, size in files:
                group.start_soon(put, path, size)
        stored = {"key": master_key, "prefix": prefix, "files": len(files)}
        return _entry(rendition, {**stored, "bytes": sum(size for _, size in files)})

    async def _put(
        self,
        path: Path,
        key: str,
        size: int,
        *,
        content_type: str,
        cache_control: str,
        metadata: dict[str, str],
    ) -> None:
        """``size``: the file's bytes, which the caller has read already."""
        extra = {"ContentType": content_type, "CacheControl": cache_control, "Metadata": metadata}
        try:
            if size < SINGLE_PUT_BYTES:
                # One read and one PutObject: the transfer manager's chunked reads (a thread hop
                # each) and its bookkeeping cost more CPU than the request itself here.
                body = await anyio.Path(path).read_bytes()
                await self._s3.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)
            else:
                # Streamed from disk, in parts: a transcode can be gigabytes.
                await self._s3.upload_file(str(path), self.bucket, key, ExtraArgs=extra)
        except (ClientError, BotoCoreError) as exc:
            name = metadata["rendition"]
            raise TransientError(f"could not upload rendition {name!r}: {exc}") from exc

    async def stored_keys(self, entries: Iterable[dict[str, Any]]) -> list[str]:
        """Every key the item entries name: a ladder's whole folder with its master playlist."""
        keys: list[str] = []
        try:
            for entry in entries:
                keys.append(entry["key"])
                if entry.get("prefix"):
                    keys.extend(await self.keys_under(str(entry["prefix"])))
        except (ClientError, BotoCoreError) as exc:
            raise TransientError(f"could not list a ladder's files: {exc}") from exc
        return sorted(set(keys))

    async def keys_under(self, prefix: str) -> list[str]:
        """Every key under ``prefix``; raises ClientError or BotoCoreError."""
        keys: list[str] = []
        paginator = self._s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(entry["Key"] for entry in page.get("Contents", []))
        return keys

    async def fetch(self, key: str, path: Path) -> None:
        """Stream one stored rendition to ``path`` (a reprocess hands it to a stage)."""
        try:
            response = await self._s3.get_object(Bucket=self.bucket, Key=key)
            body = response["Body"]
            try:
                async with await anyio.open_file(path, "wb") as out:
                    async for chunk in body.iter_chunks(_CHUNK):
                        await out.write(chunk)
            finally:
                body.close()
        except (ClientError, BotoCoreError, OSError) as exc:
            # Missing too: the item points at it, so it is ours to have kept.
            raise TransientError(f"could not download rendition {key}: {exc}") from exc

    async def remove(self, keys: Iterable[str]) -> None:
        wanted = list(keys)
        try:
            for start in range(0, len(wanted), _DELETE_BATCH):
                await self._s3.delete_objects(
                    Bucket=self.bucket,
                    Delete={
                        "Objects": [{"Key": key} for key in wanted[start : start + _DELETE_BATCH]],
                        "Quiet": True,
                    },
                )
        except (ClientError, BotoCoreError) as exc:
            raise TransientError(f"could not remove renditions nobody points at: {exc}") from exc


def _entry(rendition: Rendition, stored: dict[str, Any]) -> dict[str, Any]:
    """The item's entry for a rendition stored as ``stored`` says (its key, size ...)."""
    entry: dict[str, Any] = {**stored, "content_type": rendition.content_type}
    if rendition.width is not None:
        entry["width"] = rendition.width
    if rendition.height is not None:
        entry["height"] = rendition.height
    entry.update(rendition.extra)
    return entry


def _ladder_files(root: Path) -> list[tuple[Path, int]]:
    return [(path, path.stat().st_size) for path in sorted(root.rglob("*")) if path.is_file()]


def _verify_all(renditions: list[Rendition]) -> None:
    for rendition in renditions:
        verify_rendition(rendition)
