"""Tagging points Rekognition at the preview stored in S3 (``S3Object``) rather than sending it.

publish stores the preview ahead, with its own upload, which it then does not make again; a
Rekognition that cannot read our S3 gets the bytes instead. S3 is moto's; Rekognition is the
local endpoint of mediamill_testkit, which reads an ``S3Object`` from moto as the service would.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from mediamill_core.items import encode
from mediamill_core.keys import new_media_id
from mediamill_core.settings import Settings
from mediamill_testkit.rekognition import RekognitionServer, Reply
from stages import Job, MediaKind, MediaSource, Rendition, S3Location, StageContext, TransientError
from stages.tagging.stage import TaggingStage
from worker import metrics
from worker.aws import AwsClients, open_clients
from worker.dev.samples import write_jpeg
from worker.publish import PublishOptions, PublishStage
from worker.registry import instantiate

TAG = "0123456789ab"
LABELS = Reply(body={"Labels": [{"Name": "Cat", "Confidence": 97.5}]})
SAFE = Reply(body={"ModerationLabels": []})


@pytest.fixture
def rekognition() -> Iterator[RekognitionServer]:
    server = RekognitionServer()
    server.start()
    server.answer("DetectLabels", LABELS)
    server.answer("DetectModerationLabels", SAFE)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def aws(settings: Settings, rekognition: RekognitionServer) -> AsyncIterator[AwsClients]:
    """The worker's clients: S3 and DynamoDB on moto, Rekognition at the local endpoint."""
    tuned = settings.model_copy(update={"rekognition_endpoint_url": rekognition.endpoint})
    async with open_clients(tuned) as clients:
        yield clients


@pytest.fixture
async def publish(settings: Settings, aws: AwsClients) -> PublishStage:
    stage = PublishStage(PublishOptions())
    await stage.start(StageContext(settings, {"aws": aws}, structlog.get_logger()))
    return stage


async def tagging(aws: AwsClients, **options: Any) -> TaggingStage:
    stage = instantiate(TaggingStage, options, "tagging")
    await stage.start(StageContext(None, {"aws": aws}, structlog.get_logger()))
    return stage


class Recorded:
    """Stores ahead as told: records each call, and raises ``error`` when given one."""

    def __init__(self, stored: S3Location, error: Exception | None = None) -> None:
        self.stored, self.error = stored, error
        self.calls: list[str] = []

    async def store_ahead(self, job: Job, rendition: Rendition) -> S3Location:
        self.calls.append(rendition.name)
        if self.error is not None:
            raise self.error
        return self.stored


def photo_job(
    settings: Settings,
    dynamodb: Any,
    tmp_path: Path,
    stores_ahead: Any,
    *,
    preview_stored: S3Location | None = None,
) -> Job:
    """A photo with its thumbnail stage's renditions, and its PROCESSING item in the table."""
    media_id = new_media_id()
    item = {
        "media_id": media_id,
        "owner": "alice",
        "status": "PROCESSING",
        "created_at": "2024-01-01T00:00:00.000Z",
        "source": {"bucket": "b", "key": f"originals/{media_id}", "etag": "e", "tag": TAG},
        "sole_object": True,
    }
    dynamodb.put_item(TableName=settings.table, Item=encode(item))
    folder = tmp_path / media_id
    folder.mkdir()
    renditions = {
        name: Rendition(
            name,
            write_jpeg(folder / f"{name}.jpg", width, height),
            "image/jpeg",
            width,
            height,
            checked=True,
            stored=preview_stored if name == "preview" else None,
        )
        for name, width, height in (("preview", 640, 480), ("thumb", 320, 240))
    }
    return Job(
        source=MediaSource(media_id, "alice", "b", f"originals/{media_id}", "e", 10, tag=TAG),
        original=folder / "original.jpg",
        workdir=folder,
        kind=MediaKind.IMAGE,
        attempt=1,
        max_attempts=3,
        renditions=renditions,
        metadata={"format": "jpeg"},
        options=PublishOptions(),
        log=structlog.get_logger(),
        stores_ahead=stores_ahead,
    )


def calls_during() -> Counter[str]:
    return Counter(metrics.aws_calls())


async def test_the_preview_is_read_from_s3_where_publish_stored_it_ahead(
    settings: Settings,
    s3: Any,
    dynamodb: Any,
    tmp_path: Path,
    rekognition: RekognitionServer,
    aws: AwsClients,
    publish: PublishStage,
) -> None:
    rekognition.reads_s3(str(settings.endpoint_url), settings.region)
    job = photo_job(settings, dynamodb, tmp_path, publish)
    preview = job.renditions["preview"]
    stage = await tagging(aws)

    result = await stage.run(job)

    assert result.metadata["tags"][0]["name"] == "Cat"
    key = f"{job.media_id}/{TAG}/preview.jpg"
    where = {"Bucket": settings.renditions_bucket, "Name": key}
    sent = [*rekognition.calls("DetectLabels"), *rekognition.calls("DetectModerationLabels")]
    assert [call.s3_object for call in sent] == [where, where]
    assert all("Bytes" not in call.body["Image"] for call in sent)
    assert [call.image for call in sent] == [preview.path.read_bytes()] * 2  # read from S3

    before = calls_during()
    await publish.run(job)
    made = calls_during()
    made.subtract(before)
    assert made["s3.PutObject"] == 1  # the thumb: the preview went up ahead, once
    head = s3.head_object(Bucket=settings.renditions_bucket, Key=key)
    assert head["CacheControl"] == PublishOptions().cache_control
    assert head["Metadata"] == {"media-id": job.media_id, "rendition": "preview"}
    stored = dynamodb.get_item(TableName=settings.table, Key={"media_id": {"S": job.media_id}})
    entry = stored["Item"]["renditions"]["M"]["preview"]["M"]
    assert entry["key"] == {"S": key}
    assert entry["bytes"] == {"N": str(preview.path.stat().st_size)}
    assert (entry["width"], entry["height"]) == ({"N": "640"}, {"N": "480"})


async def test_a_file_changed_after_it_was_stored_ahead_is_uploaded_again(
    settings: Settings, s3: Any, dynamodb: Any, tmp_path: Path, publish: PublishStage
) -> None:
    job = photo_job(settings, dynamodb, tmp_path, publish)
    preview = job.renditions["preview"]
    stored = await publish.store_ahead(job, preview)
    write_jpeg(preview.path, 640, 480, quality=60)  # the same name, other bytes

    before = calls_during()
    await publish.run(job)
    made = calls_during()
    made.subtract(before)

    assert made["s3.PutObject"] == 2
    got = s3.get_object(Bucket=stored.bucket, Key=stored.key)
    assert got["Body"].read() == preview.path.read_bytes()


async def test_a_rekognition_that_cannot_read_our_s3_is_sent_bytes_from_then_on(
    settings: Settings,
    dynamodb: Any,
    tmp_path: Path,
    rekognition: RekognitionServer,
    aws: AwsClients,
) -> None:
    # This endpoint reads no S3 at all: InvalidS3ObjectException, as for a missing permission.
    ahead = Recorded(S3Location(settings.renditions_bucket, "somewhere/preview.jpg"))
    stage = await tagging(aws)
    first = photo_job(settings, dynamodb, tmp_path, ahead)
    second = photo_job(settings, dynamodb, tmp_path, ahead)

    with capture_logs() as logs:
        tagged = [await stage.run(first), await stage.run(second)]

    assert [result.metadata["tags"][0]["name"] for result in tagged] == ["Cat", "Cat"]
    assert [r.warnings for r in tagged] == [[], []]
    labels = rekognition.calls("DetectLabels")
    assert [call.s3_object is not None for call in labels] == [True, False, False]
    assert [call.image for call in labels[1:]] == [
        first.renditions["preview"].path.read_bytes(),
        second.renditions["preview"].path.read_bytes(),
    ]
    moderation = rekognition.calls("DetectModerationLabels")
    assert [call.s3_object for call in moderation] == [None, None]
    assert ahead.calls == ["preview"]  # nothing stored ahead once it is known to be no use
    assert [e["event"] for e in logs].count("tagging_reads_no_s3") == 1


async def test_a_preview_that_could_not_be_stored_ahead_is_sent_as_bytes(
    settings: Settings,
    dynamodb: Any,
    tmp_path: Path,
    rekognition: RekognitionServer,
    aws: AwsClients,
) -> None:
    failing = TransientError("could not upload rendition 'preview': SlowDown")
    ahead = Recorded(S3Location("unused", "unused"), error=failing)
    job = photo_job(settings, dynamodb, tmp_path, ahead)
    stage = await tagging(aws)

    with capture_logs() as logs:
        result = await stage.run(job)

    assert result.metadata["tags"][0]["name"] == "Cat"
    [call] = rekognition.calls("DetectLabels")
    assert call.s3_object is None
    assert call.image == job.renditions["preview"].path.read_bytes()
    [warned] = [e for e in logs if e["event"] == "tagging_preview_not_stored"]
    assert "SlowDown" in warned["error"]


async def test_with_from_s3_off_nothing_is_stored_ahead_and_the_bytes_go(
    settings: Settings,
    dynamodb: Any,
    tmp_path: Path,
    rekognition: RekognitionServer,
    aws: AwsClients,
) -> None:
    ahead = Recorded(S3Location(settings.renditions_bucket, "k"))
    job = photo_job(settings, dynamodb, tmp_path, ahead)
    stage = await tagging(aws, from_s3=False)

    await stage.run(job)

    assert ahead.calls == []
    assert [call.s3_object for call in rekognition.calls("DetectLabels")] == [None]


async def test_a_preview_already_stored_is_pointed_at_and_not_stored_again(
    settings: Settings,
    s3: Any,
    dynamodb: Any,
    tmp_path: Path,
    rekognition: RekognitionServer,
    aws: AwsClients,
) -> None:
    rekognition.reads_s3(str(settings.endpoint_url), settings.region)
    key = "earlier/preview.jpg"
    ahead = Recorded(S3Location("unused", "unused"))
    job = photo_job(
        settings,
        dynamodb,
        tmp_path,
        ahead,
        preview_stored=S3Location(settings.renditions_bucket, key),
    )
    body = job.renditions["preview"].path.read_bytes()
    s3.put_object(Bucket=settings.renditions_bucket, Key=key, Body=body)
    stage = await tagging(aws)

    await stage.run(job)

    assert ahead.calls == []
    [call] = rekognition.calls("DetectLabels")
    assert call.s3_object == {"Bucket": settings.renditions_bucket, "Name": key}
    assert call.image == body


async def test_a_ladder_is_not_stored_ahead(
    settings: Settings, dynamodb: Any, tmp_path: Path, publish: PublishStage
) -> None:
    job = photo_job(settings, dynamodb, tmp_path, publish)
    master = tmp_path / "master.m3u8"
    master.write_text("#EXTM3U\n")
    ladder = Rendition("hls", master, "application/vnd.apple.mpegurl", checked=True)
    with pytest.raises(ValueError, match="ladder"):
        await publish.store_ahead(job, ladder)
