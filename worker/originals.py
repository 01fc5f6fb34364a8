"""The original upload in S3: its current version, and streaming that very version to disk."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError

from stages.contract import MediaSource, TransientError
from worker.events import UploadEvent

# What one write to the spool holds. The socket hands the body over in pieces of up to 256 KiB,
# and each write is a hop to a worker thread: gathered, a 4 MB photo takes 4 hops, not 16.
_SPOOL_CHUNK = 1024 * 1024
_ENOSPC = 28


async def gathered(pieces: AsyncIterable[bytes], size: int) -> AsyncIterator[bytes]:
    """The pieces joined into blocks of at least ``size`` bytes (the last one may be shorter)."""
    held: list[bytes] = []
    count = 0
    async for piece in pieces:
        held.append(piece)
        count += len(piece)
        if count >= size:
            yield b"".join(held)
            held, count = [], 0
    if held:
        yield b"".join(held)


class Superseded(Exception):
    """The original is gone or was replaced since the event: nothing left to do for it."""


class Originals:
    """Reads originals through an aiobotocore S3 client."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3

    async def current_etag(self, upload: UploadEvent) -> str | None:
        try:
            head = await self._s3.head_object(Bucket=upload.bucket, Key=upload.key)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        return str(head.get("ETag", "")).strip('"')

    async def spool(self, source: MediaSource, path: Path) -> None:
        """Stream this very version of the original to disk; memory stays flat whatever its size."""
        try:
            response = await self._s3.get_object(
                Bucket=source.bucket, Key=source.key, IfMatch=f'"{source.etag}"'
            )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise Superseded("the original no longer exists") from None
            if code in ("PreconditionFailed", "412"):
                raise Superseded("the original was replaced by a newer upload") from None
            raise TransientError(f"cannot read the original: {exc}") from exc
        except BotoCoreError as exc:
            raise TransientError(f"cannot read the original: {exc}") from exc
        body = response["Body"]
        try:
            async with await anyio.open_file(path, "wb") as out:
                async for block in gathered(body.iter_chunks(_SPOOL_CHUNK), _SPOOL_CHUNK):
                    await out.write(block)
        except (BotoCoreError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno == _ENOSPC:
                raise TransientError("no space left to spool the original") from exc
            raise TransientError(f"reading the original failed: {exc}") from exc
        finally:
            body.close()
