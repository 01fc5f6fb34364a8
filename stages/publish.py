"""The built-in final stage: renditions to S3, the item to READY, media.processed to SNS.

It is the only stage that writes to AWS, once per job and idempotently: rendition keys derive
from media id and rendition name, and the item write is conditional on this very upload. When
that write finds the item deleted, the renditions just uploaded are removed again.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field

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
from worker.keys import rendition_key
from worker.notify import MediaEvents
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
    _events: MediaEvents

    async def start(self, context: StageContext) -> None:
        aws = context.resources["aws"]
        self._s3 = aws.s3
        self._bucket = context.settings.renditions_bucket
        self._store = MediaStore(aws.dynamodb, context.settings.table)
        self._events = MediaEvents(aws.sns, context.settings.media_topic_arn)

    async def run(self, job: Job) -> StageResult:
        started = time.monotonic()
        options = self.options
        assert isinstance(options, PublishOptions)
        limiter = anyio.CapacityLimiter(options.parallel_uploads)
        published: dict[str, dict[str, Any]] = {}

        async def upload(rendition: Rendition) -> None:
            async with limiter:
                published[rendition.name] = await self._upload(job, rendition, options)

        async with anyio.create_task_group() as group:
            for rendition in job.renditions.values():
                group.start_soon(upload, rendition)

        metadata = dict(job.metadata)
        location = metadata.pop("location", None)
        own = StageRecord(self.name, self.version, "ok", time.monotonic() - started)
        try:
            item = await self._store.mark_ready(
                job.media_id,
                job.source.etag,
                kind=job.kind.value if job.kind else None,
                metadata=metadata,
                location=location if isinstance(location, dict) else None,
                renditions=dict(sorted(published.items())),
                stages=[record.as_dict() for record in (*job.records, own)],
                warnings=list(job.warnings),
            )
        except StaleJob:
            # Deleted while we ran: what we just uploaded would be an orphan nobody can list.
            # (Another delivery that finished first shares our keys: those stay.)
            if await self._store.is_gone(job.media_id):
                await self._remove([entry["key"] for entry in published.values()])
            raise
        await send_media_event(self._events, self._store, item)
        return StageResult()

    async def _remove(self, keys: list[str]) -> None:
        try:
            if keys:
                await self._s3.delete_objects(
                    Bucket=self._bucket,
                    Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
                )
        except (ClientError, BotoCoreError) as exc:
            raise TransientError(f"could not remove renditions of a deleted item: {exc}") from exc

    async def _upload(
        self, job: Job, rendition: Rendition, options: PublishOptions
    ) -> dict[str, Any]:
        key = rendition_key(job.media_id, rendition.name, rendition.content_type)
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


async def send_media_event(events: MediaEvents, store: MediaStore, item: dict[str, Any]) -> None:
    """Send the item's event, then clear its pending flag; a failure is retried by redelivery."""
    try:
        await events.publish(item)
        await store.clear_event_pending(item["media_id"])
    except (ClientError, BotoCoreError) as exc:
        raise TransientError(f"media event for {item['media_id']} not sent yet: {exc}") from exc
