"""Live Photos through the real worker on moto: the still and its MOV pair up, whatever happens."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import structlog

from mediamill_core.items import encode
from mediamill_core.live import link_key
from mediamill_core.settings import Settings
from mediamill_testkit.client import Uploader, api_event, presigned_post, raw_item
from stages.photo.stage import ThumbnailStage
from stages.probe.stage import ProbeStage
from stages.video.stage import TranscodeStage
from worker.aws import open_clients
from worker.cli import main
from worker.consumer import Worker
from worker.dev.devstack import Stack
from worker.dev.live_samples import write_live_clip, write_live_photo
from worker.dev.samples import write_heic
from worker.live_photos import LivePhotos
from worker.publish import PublishStage
from worker.registry import LoadedStage, StageRegistry, instantiate

pytestmark = pytest.mark.anyio
IDENTIFIER = "0C9A4E7B-3F21-4D8E-A6B5-2E1F0D3C4B5A"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def process(settings: Settings) -> None:
    stages = [
        LoadedStage(stage=instantiate(cls, None, cls.name))
        for cls in (ProbeStage, ThumbnailStage, TranscodeStage, PublishStage)
    ]
    await Worker(settings, StageRegistry(stages), burst=True).run()


def listing(uploader: Uploader, query: dict[str, str] | None = None) -> list[str]:
    event = api_event("GET", "/media", sub=uploader.owner)
    event["queryStringParameters"] = query
    response = uploader.api(event)
    assert response["statusCode"] == 200, response
    return [entry["media_id"] for entry in json.loads(response["body"])["items"]]


def stored(dynamodb: Any, table: str, media_id: str) -> dict[str, Any]:
    item = raw_item(dynamodb, table, media_id)
    assert item is not None, media_id
    return item


def take_messages(sqs: Any, queue_url: str) -> list[str]:
    """The upload messages waiting, handed back at once: to be sent again as duplicates."""
    got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    for message in got["Messages"]:
        sqs.change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    return [message["Body"] for message in got["Messages"]]


def assert_paired(dynamodb: Any, table: str, photo_id: str, video_id: str) -> None:
    photo, video = raw_item(dynamodb, table, photo_id), raw_item(dynamodb, table, video_id)
    assert photo is not None
    assert video is not None
    assert photo["live_video_id"] == video_id
    assert video["companion_of"] == photo_id
    # The clip's own transcode, referenced: the same object, not a second encode.
    assert photo["renditions"]["motion"] == video["renditions"]["video"]
    assert photo["renditions"]["motion"]["key"].startswith(f"{video_id}/")
    motion = photo["metadata"]["motion"]
    assert motion["form"] == "live_photo"
    assert motion["video_id"] == video_id
    assert motion["duration"] == pytest.approx(video["metadata"]["duration"], abs=0.05)
    assert 1.0 < motion["duration"] < 2.0


@pytest.mark.parametrize("first", ["photo", "video"])
async def test_whichever_half_arrives_second_pairs_them(
    settings: Settings, stack: Stack, dynamodb: Any, tmp_path: Path, first: str
) -> None:
    still, clip = write_live_photo(tmp_path, IDENTIFIER)
    uploader = Uploader(settings)
    halves = {"photo": (still, "image/heic"), "video": (clip, "video/quicktime")}
    second = "video" if first == "photo" else "photo"

    ids = {first: uploader.upload(*halves[first])}
    await process(settings)
    alone = raw_item(dynamodb, stack.names.table, ids[first])
    assert alone is not None
    assert alone["status"] == "READY"
    assert "live_video_id" not in alone
    assert "companion_of" not in alone
    assert alone["metadata"]["content_identifier"] == IDENTIFIER
    ids[second] = uploader.upload(*halves[second])
    await process(settings)

    assert_paired(dynamodb, stack.names.table, ids["photo"], ids["video"])
    view = uploader.get(ids["photo"])
    assert view["live_video_id"] == ids["video"]
    assert set(view["renditions"]) == {"thumb", "preview", "motion"}
    assert listing(uploader) == [ids["photo"]]
    assert set(listing(uploader, {"companions": "include"})) == {ids["photo"], ids["video"]}


async def test_a_duplicate_delivery_pairs_what_a_dead_job_left_unpaired(
    settings: Settings, stack: Stack, dynamodb: Any, sqs: Any, tmp_path: Path
) -> None:
    still, clip = write_live_photo(tmp_path, IDENTIFIER, heic=False)
    uploader = Uploader(settings)
    photo_id = uploader.upload(still, "image/jpeg")
    await process(settings)
    video_id = uploader.upload(clip, "video/quicktime")
    bodies = take_messages(sqs, stack.queue_url)
    await process(settings)
    assert_paired(dynamodb, stack.names.table, photo_id, video_id)
    paired = raw_item(dynamodb, stack.names.table, photo_id)

    # Delivered again, the clip's upload changes nothing...
    for body in bodies:
        sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)
    await process(settings)
    assert raw_item(dynamodb, stack.names.table, photo_id) == paired

    # ...but pairs them if its job died after READY and before the pairing.
    dynamodb.update_item(
        TableName=stack.names.table,
        Key=encode({"media_id": photo_id}),
        UpdateExpression="REMOVE live_video_id, renditions.motion, metadata.motion",
    )
    dynamodb.update_item(
        TableName=stack.names.table,
        Key=encode({"media_id": video_id}),
        UpdateExpression="REMOVE companion_of",
    )
    for body in bodies:
        sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)
    await process(settings)
    assert_paired(dynamodb, stack.names.table, photo_id, video_id)


@pytest.mark.parametrize("deleted", ["photo", "video"])
async def test_deleting_either_half_leaves_the_other_whole(
    settings: Settings, stack: Stack, dynamodb: Any, s3: Any, tmp_path: Path, deleted: str
) -> None:
    still, clip = write_live_photo(tmp_path, IDENTIFIER)
    uploader = Uploader(settings)
    ids = {"photo": uploader.upload(still, "image/heic")}
    ids["video"] = uploader.upload(clip, "video/quicktime")
    await process(settings)
    assert_paired(dynamodb, stack.names.table, ids["photo"], ids["video"])
    clip_key = stored(dynamodb, stack.names.table, ids["video"])["renditions"]["video"]["key"]
    kept = "video" if deleted == "photo" else "photo"

    event = api_event("DELETE", f"/media/{ids[deleted]}", sub=uploader.owner)
    assert uploader.api(event)["statusCode"] == 204

    assert raw_item(dynamodb, stack.names.table, ids[deleted]) is None
    other = raw_item(dynamodb, stack.names.table, ids[kept])
    assert other is not None
    assert other["status"] == "READY"
    assert "live_video_id" not in other
    assert "companion_of" not in other
    assert "motion" not in other["renditions"]
    assert "motion" not in other["metadata"]
    assert listing(uploader) == [ids[kept]]
    record = raw_item(dynamodb, stack.names.table, link_key(uploader.owner, IDENTIFIER))
    assert record is not None
    assert set(record) & {"photo", "video"} == {kept}
    bucket = stack.names.renditions_bucket
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{ids['video']}/").get("Contents", [])
    if deleted == "photo":
        # The still's motion rendition was the clip's object: it stays with the clip.
        assert clip_key in {entry["Key"] for entry in listed}
    else:
        assert listed == []
    # The other half deleted too: the record has nothing left to pair, and goes.
    event = api_event("DELETE", f"/media/{ids[kept]}", sub=uploader.owner)
    assert uploader.api(event)["statusCode"] == 204
    assert raw_item(dynamodb, stack.names.table, link_key(uploader.owner, IDENTIFIER)) is None


async def test_two_halves_finishing_at_once_on_two_workers_pair_exactly_once(
    settings: Settings, stack: Stack, dynamodb: Any
) -> None:
    table = stack.names.table
    log = structlog.get_logger()
    pairs = []
    for _ in range(8):
        identifier = str(uuid.uuid4()).upper()
        photo_id, video_id = uuid.uuid4().hex, uuid.uuid4().hex
        for media_id, kind in ((photo_id, "image"), (video_id, "video")):
            renditions = {"video": {"key": f"{media_id}/t/video.mp4", "duration": 1.5}}
            dynamodb.put_item(
                TableName=table,
                Item=encode(
                    {
                        "media_id": media_id,
                        "owner": "racer",
                        "status": "READY",
                        "kind": kind,
                        "source": {"tag": "t"},
                        "metadata": {"content_identifier": identifier},
                        "renditions": renditions if kind == "video" else {"thumb": {"key": "k"}},
                    }
                ),
            )
        pairs.append((photo_id, video_id))

    async with open_clients(settings) as one, open_clients(settings) as two:
        workers = (LivePhotos(one.dynamodb, table), LivePhotos(two.dynamodb, table))

        async def finish(worker: LivePhotos, media_id: str) -> bool:
            item = raw_item(dynamodb, table, media_id)
            assert item is not None
            return await worker.settle(item, log)

        for photo_id, video_id in pairs:
            made = await asyncio.gather(finish(workers[0], photo_id), finish(workers[1], video_id))
            assert sorted(made) == [False, True]
            photo = raw_item(dynamodb, table, photo_id)
            video = raw_item(dynamodb, table, video_id)
            assert photo is not None
            assert video is not None
            assert photo["live_video_id"] == video_id
            assert video["companion_of"] == photo_id
            assert photo["renditions"]["motion"]["key"] == f"{video_id}/t/video.mp4"
            # Both finishing again (duplicates): already paired, nothing written.
            again = await asyncio.gather(finish(workers[1], photo_id), finish(workers[0], video_id))
            assert again == [False, False]


@pytest.mark.parametrize("replaced", ["photo", "video"])
async def test_a_half_uploaded_again_leaves_or_renews_the_pair(
    settings: Settings, stack: Stack, dynamodb: Any, tmp_path: Path, replaced: str
) -> None:
    still, clip = write_live_photo(tmp_path, IDENTIFIER)
    uploader = Uploader(settings)
    created = {
        "photo": (uploader.create(still, "image/heic"), still),
        "video": (uploader.create(clip, "video/quicktime"), clip),
    }
    for upload, path in created.values():
        form = upload["upload"]
        assert presigned_post(form["url"], form["fields"], path.read_bytes(), path.name) < 300
    await process(settings)
    ids = {half: str(upload["media_id"]) for half, (upload, _) in created.items()}
    assert_paired(dynamodb, stack.names.table, ids["photo"], ids["video"])
    first_clip = stored(dynamodb, stack.names.table, ids["video"])["renditions"]["video"]

    # The still again without its identifier (an edited export): the pair is undone. The clip
    # again, re-encoded with the same identifier: the still's motion follows the new MP4.
    again = (
        write_heic(tmp_path / "edited.heic")
        if replaced == "photo"
        else write_live_clip(tmp_path / "again.MOV", IDENTIFIER, seconds=1.2)
    )
    form = created[replaced][0]["upload"]
    assert presigned_post(form["url"], form["fields"], again.read_bytes(), again.name) < 300
    await process(settings)

    photo = raw_item(dynamodb, stack.names.table, ids["photo"])
    video = raw_item(dynamodb, stack.names.table, ids["video"])
    assert photo is not None
    assert video is not None
    if replaced == "photo":
        assert photo["metadata"]["content_identifier"] is None
        assert "live_video_id" not in photo
        assert "motion" not in photo["renditions"]
        assert "companion_of" not in video
        assert set(listing(uploader)) == {ids["photo"], ids["video"]}
    else:
        assert_paired(dynamodb, stack.names.table, ids["photo"], ids["video"])
        assert photo["renditions"]["motion"]["key"] != first_clip["key"]


def test_a_reprocessed_clip_takes_its_still_along(
    settings: Settings,
    stack: Stack,
    dynamodb: Any,
    s3: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    still, clip = write_live_photo(tmp_path, IDENTIFIER)
    uploader = Uploader(settings)
    photo_id = uploader.upload(still, "image/heic")
    video_id = uploader.upload(clip, "video/quicktime")
    registry = StageRegistry.from_settings(("probe", "thumbnail", "transcode", "publish"), {})
    asyncio.run(Worker(settings, registry, burst=True).run())
    assert_paired(dynamodb, stack.names.table, photo_id, video_id)
    before = stored(dynamodb, stack.names.table, video_id)["renditions"]["video"]["key"]

    monkeypatch.setenv("MEDIAMILL_STAGES", "probe,thumbnail,transcode,publish")
    args = ["reprocess", "--stage", "transcode", "--all", "--kind", "video"]
    assert main([*args, "--queue-url", stack.backfill_queue_url]) == 0
    asyncio.run(Worker(settings, registry, burst=True).run())

    video = raw_item(dynamodb, stack.names.table, video_id)
    assert video is not None
    assert video["renditions"]["video"]["key"] != before  # a new revision; the old one removed
    assert_paired(dynamodb, stack.names.table, photo_id, video_id)
    s3.head_object(Bucket=stack.names.renditions_bucket, Key=video["renditions"]["video"]["key"])
