"""HLS ladders made by the real ``hls`` stage, and published by the real publish stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

from mediamill_core.items import encode
from mediamill_core.keys import new_media_id
from mediamill_core.settings import Settings
from stages.contract import Job, MediaKind, MediaSource, Rendition, StageContext, StageOptions
from stages.probe.stage import ProbeStage
from stages.video.streaming import HlsOptions, HlsStage
from worker.aws import open_clients
from worker.dev.samples import write_video
from worker.publish import PublishOptions, PublishStage

TAG = "0123456789ab"
ETAG = "etag-1"


def make_ladder(folder: Path, *, width: int, height: int, seconds: float = 3.0) -> Rendition:
    """The ``hls`` rendition of a 24 fps clip made in ``folder`` (``clip.mp4``), 1 s segments."""
    source = write_video(folder / "clip.mp4", width=width, height=height, seconds=seconds, fps=24)
    probed = ProbeStage(StageOptions()).run_sync(Job.standalone(source, folder))
    options = HlsOptions(min_duration=2.0, segment_seconds=1.0)
    job = Job.standalone(
        source, folder, kind=MediaKind.VIDEO, metadata=probed.metadata, options=options
    )
    (rendition,) = HlsStage(options).run_sync(job).renditions
    return rendition


def publish_job(media_id: str, ladder: Rendition, workdir: Path) -> Job:
    """alice's video job under ``TAG`` whose only rendition is ``ladder``."""
    return Job(
        source=MediaSource(media_id, "alice", "b", f"originals/{media_id}", ETAG, 10, tag=TAG),
        original=workdir / "original",
        workdir=workdir,
        kind=MediaKind.VIDEO,
        attempt=1,
        max_attempts=3,
        renditions={"hls": ladder},
        metadata={},
        options=PublishOptions(),
        log=structlog.get_logger(),
    )


async def publish(settings: Settings, job: Job) -> None:
    async with open_clients(settings) as aws:
        stage = PublishStage(PublishOptions())
        await stage.start(StageContext(settings, {"aws": aws}, structlog.get_logger()))
        await stage.run(job)


def processing_item(media_id: str) -> dict[str, Any]:
    """alice's item as the worker's claim leaves it, DynamoDB-encoded."""
    return encode(
        {
            "media_id": media_id,
            "owner": "alice",
            "status": "PROCESSING",
            "created_at": "2024-01-01T00:00:00.000Z",
            "source": {"bucket": "b", "key": f"originals/{media_id}", "etag": ETAG, "tag": TAG},
        }
    )


async def published_ladder(
    settings: Settings, dynamodb: Any, ladder: Rendition, workdir: Path
) -> str:
    """A new READY video of alice's whose ladder publish stored; its media id."""
    media_id = new_media_id()
    dynamodb.put_item(TableName=settings.table, Item=processing_item(media_id))
    await publish(settings, publish_job(media_id, ladder, workdir))
    return media_id
