"""The built-in final stage: renditions to S3, the item to READY, media.processed to SNS.

It is the only stage that writes to AWS, once per job and idempotently: rendition keys derive
from the media id, the object (``source.tag``) and the rendition name, and the item write is
conditional on this very object. Renditions of an earlier object of the same id are removed once
the item points at the new set; when the write finds the item deleted or given to a newer
object, the renditions just uploaded are removed again. An item that never held another object
(``sole_object``) has no earlier renditions: they are not looked for.

A stage before it may ask for a rendition to be stored ahead (:meth:`PublishStage.store_ahead`,
the worker's ``renditions`` resource): tagging points Rekognition at the stored preview rather
than sending its bytes. It goes up under the same key with the same headers, and publish uses
that upload instead of making its own.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field

from mediamill_core.hls import HLS_CONTENT_TYPE
from mediamill_core.items import MediaStatus
from mediamill_core.keys import rendition_key, rendition_prefix
from stages.contract import (
    Job,
    Rendition,
    S3Location,
    Stage,
    StageContext,
    StageOptions,
    StageRecord,
    StageResult,
    TransientError,
)
from worker.live_photos import LivePhotos, pair_live_photo
from worker.notify import MediaEvents, Outbox
from worker.rendition_store import RenditionStore
from worker.store import SOLE_OBJECT, MediaStore, StaleJob


class PublishOptions(StageOptions):
    cache_control: str = "public, max-age=31536000, immutable"
    parallel_uploads: int = Field(default=4, ge=1, le=32)


# Renditions stored ahead that publish has not used yet. A job that fails before publish leaves
# its entry behind; the oldest are forgotten past this many (publish then uploads again).
_AHEAD_KEPT = 1024


@dataclass(frozen=True, slots=True)
class _Ahead:
    """A rendition stored ahead: its key, the item's entry for it, and the file as it was."""

    key: str
    entry: dict[str, Any]
    file: tuple[int, int]  # size and mtime_ns: publish uploads again if the file changed since


def _file_state(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


class PublishStage(Stage):
    name = "publish"
    version = "1.0.0"
    final = True
    timeout = 900.0
    Options = PublishOptions

    _renditions: RenditionStore
    _store: MediaStore
    _outbox: Outbox
    _live: LivePhotos

    async def start(self, context: StageContext) -> None:
        aws = context.resources["aws"]
        self._renditions = RenditionStore(aws.s3, context.settings.renditions_bucket)
        # An event's sender holds it for half the grace, as the worker's own store does.
        lock_seconds = context.settings.event_grace_seconds / 2
        self._store = MediaStore(
            aws.dynamodb, context.settings.table, event_lock_seconds=lock_seconds
        )
        self._outbox = Outbox(MediaEvents(aws.sns, context.settings.media_topic_arn), self._store)
        self._live = LivePhotos(aws.dynamodb, context.settings.table)
        self._ahead: OrderedDict[Path, _Ahead] = OrderedDict()

    def _key(self, job: Job, rendition: Rendition) -> str:
        return rendition_key(job.media_id, job.source.tag, rendition.name, rendition.content_type)

    async def store_ahead(self, job: Job, rendition: Rendition) -> S3Location:
        """Upload one rendition now, checked, as this job's publish would (one file, not a
        ladder); its publish then uses this upload. Raises TransientError or RenditionInvalid."""
        options = self.options
        assert isinstance(options, PublishOptions)
        if rendition.content_type == HLS_CONTENT_TYPE:
            raise ValueError(f"{rendition.name!r} is a ladder of many files: not stored ahead")
        await self._renditions.check([rendition])
        key = self._key(job, rendition)
        entry = await self._renditions.upload(job.media_id, rendition, key, options.cache_control)
        self._ahead[rendition.path] = _Ahead(key, entry, _file_state(rendition.path))
        while len(self._ahead) > _AHEAD_KEPT:
            self._ahead.popitem(last=False)
        return S3Location(self._renditions.bucket, key)

    def _stored_ahead(self, rendition: Rendition, key: str) -> dict[str, Any] | None:
        """The entry of this very file stored ahead under ``key``, if it was (used once)."""
        ahead = self._ahead.pop(rendition.path, None)
        if ahead is None or ahead.key != key:
            return None
        try:
            unchanged = ahead.file == _file_state(rendition.path)
        except OSError:
            unchanged = False
        return ahead.entry if unchanged else None

    async def run(self, job: Job) -> StageResult:
        started = time.monotonic()
        options = self.options
        assert isinstance(options, PublishOptions)
        limiter = anyio.CapacityLimiter(options.parallel_uploads)
        published: dict[str, dict[str, Any]] = {}

        # Nothing is uploaded when one fails its check.
        await self._renditions.check(job.renditions.values())

        async def upload(rendition: Rendition) -> None:
            key = self._key(job, rendition)
            ahead = self._stored_ahead(rendition, key)
            if ahead is not None:
                published[rendition.name] = ahead
                return
            async with limiter:
                published[rendition.name] = await self._renditions.upload(
                    job.media_id, rendition, key, options.cache_control
                )

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
                await self._renditions.remove(
                    await self._renditions.stored_keys(published.values())
                )
            raise
        if not item.get(SOLE_OBJECT):
            await self._remove_superseded(job)
        try:
            await self._outbox.announce(item, token, job.log)
        except TransientError as exc:
            # READY is recorded and the event stays owed: the sweep sends it, so the upload
            # is not processed again for it.
            job.log.warning("event_not_sent", error=str(exc))
        await pair_live_photo(self._live, item, job.log)
        return StageResult()

    async def _remove_superseded(self, job: Job) -> None:
        """Delete renditions of earlier objects of this id: the item no longer points at them."""
        current = rendition_prefix(job.media_id, job.source.tag)
        try:
            keys = await self._renditions.keys_under(f"{job.media_id}/")
        except (ClientError, BotoCoreError) as exc:
            # The item is READY and points at the new set; the old one is only clutter now,
            # and the next publish or the owner's DELETE removes it.
            job.log.warning("superseded_renditions_not_listed", error=str(exc))
            return
        stale = [key for key in keys if not key.startswith(current)]
        if stale:
            job.log.info("superseded_renditions_removed", count=len(stale))
            await self._renditions.remove(stale)
