"""`mediamill inspect MEDIA_ID` on the moto stack: a READY item, a stuck one whose worker died
and whose message is in the DLQ, and ids that have no item."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from mediamill_core.hls import HLS_CONTENT_TYPE
from mediamill_core.items import encode
from mediamill_core.keys import new_media_id, original_key
from mediamill_core.settings import Settings
from mediamill_testkit.client import Uploader, queue_counts
from mediamill_testkit.dead_letters import claim_and_die, exhaust, process
from stages.probe.stage import ProbeStage
from worker.cli import main
from worker.dev.devstack import Stack
from worker.dev.samples import write_png
from worker.ops.inspect import inspect_media, inspection_json
from worker.ops.lanes import ops_clients
from worker.registry import StageRegistry
from worker.stuck import stuck_after_seconds

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    return write_png(tmp_path / "photo.png", 64, 48)


def inspect_json(capsys: pytest.CaptureFixture[str], media_id: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()  # what the worker logged before
    status = main(["inspect", media_id, "--json"])
    return status, json.loads(capsys.readouterr().out)


async def test_a_ready_item_with_its_stages_original_renditions_and_a_leftover(
    settings: Settings, stack: Stack, photo: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    media_id = Uploader(settings).upload(photo)
    await process(settings)
    leftover = f"{media_id}/0123456789ab/thumb.webp"
    s3.put_object(Bucket=stack.names.renditions_bucket, Key=leftover, Body=b"x" * 10)

    status, found = inspect_json(capsys, media_id)

    size = (await anyio.Path(photo).stat()).st_size
    assert status == 0
    assert found["found"] is True
    assert found["status"] == "READY"
    assert found["kind"] == "image"
    assert [(s["name"], s["version"], s["outcome"]) for s in found["stages"]] == [
        ("probe", ProbeStage.version, "ok"),
        ("copy", "1.0.0", "ok"),
        ("publish", "1.0.0", "ok"),
    ]
    assert all(s["seconds"] >= 0 for s in found["stages"])
    original = found["original"]
    assert original["key"] == original_key(media_id)
    assert original["size"] == size
    assert original["etag"] == found["item"]["source"]["etag"]
    objects = {o["key"]: o for o in found["objects"]}
    current = found["item"]["renditions"]["copy"]["key"]
    assert objects[current]["belongs"] == "current"
    assert objects[current]["size"] == size
    assert objects[leftover]["belongs"] == "leftover of an earlier object"
    assert objects[leftover]["size"] == 10
    queues = {queue.pop("queue"): queue for queue in found["queues"]}
    assert queues["media"] == {"visible": 0, "in_flight": 0, "delayed": 0}
    assert found["dead_letters"] == []
    assert found["lease"] is None
    assert found["findings"] == ["1 object(s) of an earlier upload remain under its prefix"]
    registry = StageRegistry.from_settings(settings.stages, settings.stage_options)
    assert found["stuck_after_seconds"] == stuck_after_seconds(settings, registry)

    capsys.readouterr()
    assert main(["inspect", media_id]) == 0
    out = capsys.readouterr().out
    assert f"media {media_id}: READY (image), owner user-1" in out
    assert "leftover of an earlier object" in out
    assert "dead-letter queues: no message for it" in out

    s3.delete_object(Bucket=stack.names.renditions_bucket, Key=current)
    _, found = inspect_json(capsys, media_id)
    assert "READY, but rendition(s) missing from S3: copy" in found["findings"]


async def test_a_stuck_item_whose_worker_died_and_whose_message_is_dead(
    settings: Settings, stack: Stack, photo: Path, sqs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    Uploader(settings).upload(photo)
    got = sqs.receive_message(QueueUrl=stack.queue_url, VisibilityTimeout=0, WaitTimeSeconds=5)
    [message] = [m for m in got["Messages"] if "Records" in m["Body"]]
    media_id = await claim_and_die(settings, message, lease_seconds=1)
    # Its worker never comes back; the message is received until SQS gives up on it.
    exhaust(sqs, stack.queue_url, stack.dlq_url, expected=1)
    await anyio.sleep(1.2)  # the dead job's lease lapses

    found = inspect_media(ops_clients(settings), settings, media_id, stuck_after=0.5)

    assert found.item["status"] == "PROCESSING"
    findings = "\n".join(found.findings)
    assert "stuck: PROCESSING for" in found.findings[0]
    assert "no job holds it: the last job's lease lapsed" in findings
    [letter] = found.letters
    assert letter.lane == "media"
    assert f"a message for it is in the media DLQ ({letter.message_id})" in findings
    assert f"`mediamill dlq redrive --id {letter.message_id}`" in findings
    document = inspection_json(found)
    assert document["lease"]["held"] is False
    assert document["dead_letters"][0]["on_redrive"] == ["processed again"]
    assert queue_counts(sqs, stack.dlq_url) == (1, 0)  # looked at, not moved

    # With the real limit (the stages' chain of timeouts and more) it is not stuck yet.
    status, shown = inspect_json(capsys, media_id)
    assert status == 0
    assert not any(f.startswith("stuck") for f in shown["findings"])
    assert shown["findings"][0].startswith("PROCESSING for")


async def test_a_live_lease_says_a_job_holds_it(
    settings: Settings, stack: Stack, photo: Path, sqs: Any
) -> None:
    Uploader(settings).upload(photo)
    got = sqs.receive_message(QueueUrl=stack.queue_url, VisibilityTimeout=30, WaitTimeSeconds=5)
    [message] = [m for m in got["Messages"] if "Records" in m["Body"]]
    media_id = await claim_and_die(settings, message, lease_seconds=60)

    found = inspect_media(ops_clients(settings), settings, media_id, stuck_after=3600)

    assert any(
        f.startswith("a job holds it now") and message["MessageId"] in f for f in found.findings
    )
    assert inspection_json(found)["lease"]["held"] is True
    [media] = [queue for queue in found.queues if queue["queue"] == "media"]
    assert media["in_flight"] == 1


def test_an_unknown_id_is_said_so_and_exits_1(
    settings: Settings, stack: Stack, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    nobody = new_media_id()
    assert main(["inspect", nobody]) == 1
    assert f"no item has media id {nobody} in table {stack.names.table}" in capsys.readouterr().err

    status, found = inspect_json(capsys, nobody)
    assert status == 1
    assert found["found"] is False
    assert nobody in found["error"]

    orphan = new_media_id()
    s3.put_object(Bucket=stack.names.originals_bucket, Key=original_key(orphan), Body=b"x")
    assert main(["inspect", orphan]) == 1
    assert f"an original is in s3://{stack.names.originals_bucket}/" in capsys.readouterr().err

    assert main(["inspect", "../etc/passwd"]) == 1
    assert "is not a media id (32 hexadecimal digits)" in capsys.readouterr().err


async def test_every_file_of_a_ladder_belongs_to_the_current_item(
    settings: Settings,
    stack: Stack,
    photo: Path,
    s3: Any,
    dynamodb: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A ladder's entry names its master playlist; the variants and segments under its prefix
    are the item's too, not "not in the item"."""
    media_id = Uploader(settings).upload(photo)
    await process(settings)
    _, found = inspect_json(capsys, media_id)
    prefix = f"{media_id}/{found['item']['source']['tag']}/hls/"
    files = [f"{prefix}master.m3u8", f"{prefix}360p/index.m3u8", f"{prefix}360p/seg_00000.m4s"]
    for key in files:
        s3.put_object(Bucket=stack.names.renditions_bucket, Key=key, Body=b"x")
    entry = {"key": files[0], "prefix": prefix, "content_type": HLS_CONTENT_TYPE, "files": 3}
    dynamodb.update_item(
        TableName=stack.names.table,
        Key=encode({"media_id": media_id}),
        UpdateExpression="SET renditions.hls = :entry",
        ExpressionAttributeValues=encode({":entry": entry}),
    )

    _, found = inspect_json(capsys, media_id)

    objects = {o["key"]: o["belongs"] for o in found["objects"]}
    assert [objects[key] for key in files] == ["current"] * 3
