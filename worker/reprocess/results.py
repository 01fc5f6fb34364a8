"""A reprocess's files and its write: stored renditions fetched for the stages that read them,
new ones uploaded under the item's current object tag, the merge, and the clean-up after it.

A rendition that replaces one of the same name gets a key of its own (``<name>.<revision>``):
the old key may be cached for a year as immutable, so it is never written again. Once the
item points at the new set, whatever under its tag it no longer points at is removed (the
replaced files, and those of an earlier try that died before its merge).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError
from structlog.typing import FilteringBoundLogger

from mediamill_core.hls import held_keys
from mediamill_core.items import iso, utc_now
from mediamill_core.keys import rendition_key, rendition_prefix
from mediamill_core.reprocess import ReprocessRequest
from stages.contract import Rendition, S3Location, StageResult, TransientError
from worker.job_state import JobOutcome, JobState
from worker.live_photos import LivePhotos, pair_live_photo
from worker.notify import Outbox
from worker.publish import PublishOptions
from worker.registry import StageRegistry
from worker.rendition_store import RenditionStore
from worker.reprocess.plan import DONE_OUTCOMES, Plan, merged, stored_metadata
from worker.reprocess.writes import ReprocessLease, ReprocessWrites
from worker.store import StaleJob

# What an item's rendition entry holds besides what a stage put in Rendition.extra.
_ENTRY_FIELDS = ("key", "content_type", "bytes", "width", "height")


class ResultWriter:
    """Everything a reprocess writes to S3 and the table."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        writes: ReprocessWrites,
        outbox: Outbox,
        registry: StageRegistry,
    ) -> None:
        self._store = RenditionStore(s3, bucket)
        self._writes = writes
        self._outbox = outbox
        self._live = LivePhotos.beside(writes)
        self._final = frozenset(stage.name for stage in registry.order if stage.final)
        # Renditions are served as publish serves them.
        options = next(
            (s.options for s in registry.order if isinstance(s.options, PublishOptions)),
            PublishOptions(),
        )
        assert isinstance(options, PublishOptions)
        self._options = options

    async def seed(
        self, state: JobState, item: dict[str, Any], steps: Plan, directory: Path
    ) -> None:
        """Give the stages not run again their stored results: the item's metadata, and the
        stored renditions the stages that run read, downloaded to ``directory``."""
        stored = item.get("renditions") or {}
        fetched: list[Rendition] = []
        if steps.renditions:
            await anyio.Path(directory).mkdir(parents=True, exist_ok=True)
        for name in sorted(steps.renditions):
            entry = stored[name]
            key = str(entry["key"])
            path = directory / f"{name}.{key.rsplit('.', 1)[-1]}"
            await self._store.fetch(key, path)
            fetched.append(
                Rendition(
                    name=name,
                    path=path,
                    content_type=str(entry.get("content_type")),
                    width=entry.get("width"),
                    height=entry.get("height"),
                    extra={k: v for k, v in entry.items() if k not in _ENTRY_FIELDS},
                    checked=True,  # published once already: checked then
                    stored=S3Location(self._store.bucket, key),
                )
            )
        metadata = stored_metadata(item)
        for name in steps.reused:
            state.stored[name] = StageResult(metadata=metadata, renditions=fetched)

    async def merge(
        self,
        item: dict[str, Any],
        lease: ReprocessLease,
        outcome: JobOutcome,
        request: ReprocessRequest,
        log: FilteringBoundLogger,
    ) -> bool:
        """Upload, merge, tidy, release, announce; False when the item moved on meanwhile (the
        uploads are removed again). Raises TransientError for what may pass."""
        media_id = str(item["media_id"])
        tag = str((item.get("source") or {}).get("tag"))
        existing = item.get("renditions") or {}
        await self._store.check(outcome.renditions.values())
        uploaded: dict[str, dict[str, Any]] = {}
        limiter = anyio.CapacityLimiter(self._options.parallel_uploads)

        async def upload(rendition: Rendition) -> None:
            revision = lease.token[:8] if rendition.name in existing else None
            key = rendition_key(media_id, tag, rendition.name, rendition.content_type, revision)
            async with limiter:
                uploaded[rendition.name] = await self._store.upload(
                    media_id, rendition, key, self._options.cache_control
                )

        async with anyio.create_task_group() as group:
            for rendition in outcome.renditions.values():
                group.start_soon(upload, rendition)

        stamp = iso(utc_now())
        sets = merged(
            item,
            metadata=outcome.metadata,
            renditions=dict(sorted(uploaded.items())),
            records=outcome.records,
            warnings=outcome.warnings,
            final_stages=self._final,
            stamp=stamp,
            request_id=request.request_id,
        )
        # New results are news for consumers (new tags, a moderation verdict); a failure is not.
        news = any(record.outcome in DONE_OUTCOMES for record in outcome.records)
        token = secrets.token_hex(8) if news else None
        try:
            written = await self._writes.merge(item, lease, sets, stamp=stamp, event_token=token)
        except StaleJob as exc:
            log.info("reprocess_dropped", detail=str(exc))
            await self._forget(await self._store.stored_keys(uploaded.values()), log)
            return False
        except (ClientError, BotoCoreError) as exc:
            # Perhaps written after all: the next try finds the request satisfied, or merges
            # again and its clean-up removes what this one uploaded.
            raise TransientError(f"could not merge the reprocess: {exc}") from exc
        await self._tidy(written, rendition_prefix(media_id, tag), log)
        try:
            # A clip's new ``video`` rendition: its still's ``motion`` follows it.
            await pair_live_photo(self._live, written, log)
        except TransientError as exc:
            log.warning("live_photo_not_paired", error=str(exc), detail="its next finish does")
        try:
            await self._writes.release_lease(media_id, lease)
        except (ClientError, BotoCoreError) as exc:
            log.warning("reprocess_lease_not_released", error=str(exc), detail="it lapses")
        if token is not None:
            try:
                await self._outbox.announce(written, token, log)
            except TransientError as exc:
                log.warning("event_not_sent", error=str(exc), detail="the sweep sends it later")
        return True

    async def _tidy(self, item: dict[str, Any], prefix: str, log: FilteringBoundLogger) -> None:
        """Remove what the item no longer points at under its own tag, while the lease still
        keeps any other reprocess from writing there."""
        held = held_keys(item.get("renditions") or {})
        try:
            stale = [key for key in await self._store.keys_under(prefix) if not held(key)]
        except (ClientError, BotoCoreError) as exc:
            log.warning("replaced_renditions_not_listed", error=str(exc))
            return
        if stale:
            log.info("replaced_renditions_removed", count=len(stale))
            await self._forget(stale, log)

    async def _forget(self, keys: list[str], log: FilteringBoundLogger) -> None:
        try:
            await self._store.remove(keys)
        except TransientError as exc:
            # Clutter only: nothing points at these, and the next publish or DELETE lists them.
            log.warning("renditions_not_removed", error=str(exc), count=len(keys))
