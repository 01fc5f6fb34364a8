"""The built-in final stage: renditions to S3, the item to READY, media.processed to SNS.

It is the only stage that writes to AWS, once per job and idempotently: rendition keys derive
from the media id, the object (``source.tag``) and the rendition name, and the item write is
conditional on this very object. Renditions of an earlier object of the same id are removed once
the item points at the new set; when the write finds the item deleted or given to a newer
object, the renditions just uploaded are removed again.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field

from mediamill_core.items import MediaStatus
from mediamill_core.keys import rendition_key, rendition_prefix
from stages.contract import (
    Job,
    Rendition,
    Stage,
    StageContext,
    StageOptions,
    StageRecord,
    StageResult,
    TransientError,
)
from stages.photo.verify import verify_rendition
from worker.notify import MediaEvents, Outbox
from worker.store import MediaStore, StaleJob


class PublishOptions(StageOptions):
    cache_control: str = "public, max-age=31536000, immutable"
    parallel_uploads: int = Field(default=4, ge=1, le=32)


class PublishStage(Stage):
    name = "publish"
    version = "1.0.0"
    final = True
    timeout = 900.0
    Options = PublishOptions

    _s3: Any
    _bucket: str
    _store: MediaStore
    _outbox: Outbox

    async def start(self, context: StageContext) -> None:
        aws = context.resources["aws"]
        self._s3 = aws.s3
        self._bucket = context.settings.renditions_bucket
        # An event's sender holds it for half the grace, as the worker's own store does.
        lock_seconds = context.settings.event_grace_seconds / 2
        self._store = MediaStore(
            aws.dynamodb, context.settings.table, event_lock_seconds=lock_seconds
        )
        self._outbox = Outbox(MediaEvents(aws.sns, context.settings.media_topic_arn), self._store)

    async def run(self, job: Job) -> StageResult:
        started = time.monotonic()
        options = self.options
        assert isinstance(options, PublishOptions)
        limiter = anyio.CapacityLimiter(options.parallel_uploads)
        published: dict[str, dict[str, Any]] = {}

        # A file is never published unchecked (renditions are cached for a year), and nothing
        # is uploaded when one fails its check.
        unchecked = [r for r in job.renditions.values() if not r.checked]
        if unchecked:
            await anyio.to_thread.run_sync(_verify_all, unchecked)

        async def upload(rendition: Rendition) -> None:
            async with limiter:
                published[rendition.name] = await self._upload(job, rendition, options)

        async with anyio.create_task_group() as group:
            for rendition in job.renditions.values():
                group.start_soon(upload, rendition)

        metadata = dict(job.metadata)
        location = metadata.pop("location", None)
        metadata.setdefault("moderation", {"status": "off"})
        own = StageRecord(self.name, self.version, "ok", time.monotonic() - started)
        token = secrets.token_hex(8)
        try:
            item = await self._store.mark_ready(
                job.media_id,
                job.source.tag,
                lock_token=token,
                kind=job.kind.value if job.kind else None,
                metadata=metadata,
                location=location if isinstance(location, dict) else None,
                renditions=dict(sorted(published.items())),
                stages=[record.as_dict() for record in (*job.records, own)],
                warnings=list(job.warnings),
            )
        except StaleJob:
            # Deleted, or given to a newer object, while we ran: what we just uploaded would be
            # an orphan nobody can list. (Another delivery of this very object shares our keys
            # and finished first: those stay.)
            current = await self._store.get(job.media_id)
            if (
                current is None
                or current.get("status") == MediaStatus.DELETING.value
                or (current.get("source") or {}).get("tag") != job.source.tag
            ):
                await self._remove([entry["key"] for entry in published.values()])
            raise
        await self._remove_superseded(job)
        try:
            await self._outbox.announce(item, token, job.log)
        except TransientError as exc:
            # READY is recorded and the event stays owed: the sweep sends it, so the upload
            # is not processed again for it.
            job.log.warning("event_not_sent", error=str(exc))
        return StageResult()

    async def _remove_superseded(self, job: Job) -> None:
        """Delete renditions of earlier objects of this id: the item no longer points at them."""
        current = rendition_prefix(job.media_id, job.source.tag)
        stale: list[str] = []
        try:
            paginator = self._s3.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self._bucket, Prefix=f"{job.media_id}/"):
                stale.extend(
                    entry["Key"]
                    for entry in page.get("Contents", [])
                    if not entry["Key"].startswith(current)
                )
        except (ClientError, BotoCoreError) as exc:
            # The item is READY and points at the new set; the old one is only clutter now,
            # and the next publish or the owner's DELETE removes it.
            job.log.warning("superseded_renditions_not_listed", error=str(exc))
            return
        if stale:
            job.log.info("superseded_renditions_removed", count=len(stale))
            await self._remove(stale)

    async def _remove(self, keys: list[str]) -> None:
        try:
            if keys:
                await self._s3.delete_objects(
                    Bucket=self._bucket,
                    Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
                )
        except (ClientError, BotoCoreError) as exc:
            raise TransientError(f"could not remove renditions nobody points at: {exc}") from exc

    async def _upload(
        self, job: Job, rendition: Rendition, options: PublishOptions
    ) -> dict[str, Any]:
        key = rendition_key(job.media_id, job.source.tag, rendition.name, rendition.content_type)
        size = rendition.path.stat().st_size
        try:
            # upload_file streams from disk and switches to multipart for large renditions.
            await self._s3.upload_file(
                str(rendition.path),
                self._bucket,
                key,
                ExtraArgs={
                    "ContentType": rendition.content_type,
                    "CacheControl": options.cache_control,
                    "Metadata": {"media-id": job.media_id, "rendition": rendition.name},
                },
            )
        except (ClientError, BotoCoreError) as exc:
            raise TransientError(f"could not upload rendition {rendition.name!r}: {exc}") from exc
        entry: dict[str, Any] = {"key": key, "content_type": rendition.content_type, "bytes": size}
        if rendition.width is not None:
            entry["width"] = rendition.width
        if rendition.height is not None:
            entry["height"] = rendition.height
        entry.update(rendition.extra)
        return entry


def _verify_all(renditions: list[Rendition]) -> None:
    for rendition in renditions:
        verify_rendition(rendition)
