"""The worker's side of a reprocess request, on the moto stack: what it ignores, what it
refuses, what a re-upload or delete meanwhile does to it, and how a failure is recorded."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from mediamill_core.items import utc_now
from mediamill_core.reprocess import Mode, new_request
from mediamill_core.settings import Settings
from mediamill_testkit.backfill_stages import ENTRY_POINTS, UPGRADES
from mediamill_testkit.client import Uploader, queue_counts, raw_item
from mediamill_testkit.plugin_dist import install_plugin
from worker.consumer import Worker
from worker.dev import samples
from worker.dev.devstack import Stack
from worker.registry import StageRegistry
from worker.spool import NEED_FLOOR

pytestmark = pytest.mark.timeout(180)
BUILT_IN = ("probe", "thumbnail", "publish")


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    install_plugin(site, "mediamill-backfill-test", "1.0", ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    return site


def process(
    settings: Settings, *stages: str, options: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The real worker in burst mode; what it logged."""
    registry = StageRegistry.from_settings((*BUILT_IN, *stages), options or {})
    with capture_logs() as logs:
        anyio.run(Worker(settings, registry, burst=True).run)
    return logs


def names(logs: list[dict[str, Any]]) -> list[str]:
    return [str(entry.get("event")) for entry in logs]


def ask(
    sqs: Any, stack: Stack, media_id: str, stage: str, mode: Mode = "missing", **kw: Any
) -> None:
    request = new_request(
        media_id,
        stage,
        mode,
        kw.get("requested_at", utc_now()),
        kw.get("request_id", "run-1"),
    )
    sqs.send_message(QueueUrl=stack.backfill_queue_url, MessageBody=request.body())


def ready_photo(settings: Settings, tmp_path: Path, name: str = "p") -> str:
    media_id = Uploader(settings).upload(samples.write_png(tmp_path / f"{name}.png", 240, 180))
    return media_id


def test_requests_for_items_gone_not_ready_or_satisfied_are_acknowledged_and_ignored(
    plugin: Path, settings: Settings, stack: Stack, tmp_path: Path, sqs: Any, dynamodb: Any
) -> None:
    uploader = Uploader(settings)
    done = ready_photo(settings, tmp_path, "done")
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"<html><body>not a picture</body></html>")
    failed = uploader.upload(fake)
    deleted = ready_photo(settings, tmp_path, "deleted")
    busy = ready_photo(settings, tmp_path, "busy")
    process(settings, "previewdigest")
    table = stack.names.table
    dynamodb.delete_item(TableName=table, Key={"media_id": {"S": deleted}})
    # A re-upload's claim took it: its own job runs every stage.
    dynamodb.update_item(
        TableName=table,
        Key={"media_id": {"S": busy}},
        UpdateExpression="SET #s = :p REMOVE stages",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":p": {"S": "PROCESSING"}},
    )
    before = {m: raw_item(dynamodb, table, m) for m in (done, failed, busy)}
    assert before[failed] is not None
    assert before[failed]["status"] == "FAILED"

    ask(sqs, stack, done, "previewdigest")  # done at the installed version already
    ask(sqs, stack, failed, "previewdigest")
    ask(sqs, stack, deleted, "previewdigest")
    ask(sqs, stack, busy, "previewdigest")
    logged = names(process(settings, "previewdigest"))

    assert logged.count("reprocess_satisfied") == 1
    assert logged.count("reprocess_ignored") == 3
    assert {m: raw_item(dynamodb, table, m) for m in (done, failed, busy)} == before
    assert queue_counts(sqs, stack.backfill_queue_url) == (0, 0)
    assert queue_counts(sqs, stack.backfill_dlq_url) == (0, 0)


def test_a_duplicate_request_runs_the_stage_once_and_all_asks_again_only_when_older(
    plugin: Path, settings: Settings, stack: Stack, tmp_path: Path, sqs: Any, dynamodb: Any
) -> None:
    media_id = ready_photo(settings, tmp_path)
    process(settings)
    ask(sqs, stack, media_id, "previewdigest")
    ask(sqs, stack, media_id, "previewdigest", request_id="run-2")
    logged = names(process(settings, "previewdigest"))
    assert logged.count("reprocess_done") == 1
    # Received together, the second meets the first's lease; later, its result. Neither
    # costs it a retry.
    assert (
        logged.count("reprocess_duplicate_while_running") + logged.count("reprocess_satisfied") == 1
    )
    assert "retry_scheduled" not in logged
    item = raw_item(dynamodb, stack.names.table, media_id)
    assert item is not None
    assert [r["name"] for r in item["stages"]].count("previewdigest") == 1

    # --all: a request made before the stage last ran is satisfied; one made after it is not.
    ask(sqs, stack, media_id, "previewdigest", "all", requested_at=utc_now() - timedelta(hours=1))
    assert names(process(settings, "previewdigest")).count("reprocess_satisfied") == 1
    ask(sqs, stack, media_id, "previewdigest", "all", request_id="run-3")
    assert names(process(settings, "previewdigest")).count("reprocess_done") == 1
    again = raw_item(dynamodb, stack.names.table, media_id)
    assert again is not None
    assert again["reprocessed_at"] > item["reprocessed_at"]


@pytest.mark.parametrize("action", ["reupload", "delete"])
def test_a_reupload_or_delete_during_the_job_wins_and_its_uploads_are_removed(
    action: str,
    plugin: Path,
    settings: Settings,
    stack: Stack,
    tmp_path: Path,
    s3: Any,
    sqs: Any,
    dynamodb: Any,
) -> None:
    media_id = ready_photo(settings, tmp_path)
    process(settings)
    bucket = stack.names.renditions_bucket
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    ask(sqs, stack, media_id, "meddler")
    meddle = {"endpoint_url": stack.endpoint_url, "table": stack.names.table, "action": action}
    logs = process(settings, "meddler", options={"meddler": meddle})
    logged = names(logs)

    assert "reprocess_dropped" in logged
    item = raw_item(dynamodb, stack.names.table, media_id)
    assert item is not None
    assert "mono" not in item["renditions"]
    assert "reprocessed_at" not in item
    assert {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])} == keys
    assert queue_counts(sqs, stack.backfill_queue_url) == (0, 0)


def test_a_replaced_rendition_gets_a_new_key_and_the_old_file_goes(
    plugin: Path, settings: Settings, stack: Stack, tmp_path: Path, s3: Any, sqs: Any, dynamodb: Any
) -> None:
    media_id = ready_photo(settings, tmp_path)
    process(settings, "mono")
    table, bucket = stack.names.table, stack.names.renditions_bucket
    first = raw_item(dynamodb, table, media_id)
    assert first is not None
    old_key = first["renditions"]["mono"]["key"]
    install_plugin(plugin, "mediamill-backfill-test", "2.0", {**ENTRY_POINTS, **UPGRADES})

    ask(sqs, stack, media_id, "mono", "outdated")
    process(settings, "mono")

    item = raw_item(dynamodb, table, media_id)
    assert item is not None
    new_key = item["renditions"]["mono"]["key"]
    tag = item["source"]["tag"]
    # Under the same object's tag, never the cached key again.
    assert new_key.startswith(f"{media_id}/{tag}/mono.")
    assert new_key != old_key
    assert {k: v for k, v in item["renditions"].items() if k != "mono"} == {
        k: v for k, v in first["renditions"].items() if k != "mono"
    }
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert keys == {entry["key"] for entry in item["renditions"].values()}
    assert item["metadata"]["mono_version"] == "2.0.0"


def test_a_required_stage_that_fails_is_recorded_and_the_item_stays_ready(
    plugin: Path, settings: Settings, stack: Stack, tmp_path: Path, sqs: Any, dynamodb: Any
) -> None:
    media_id = ready_photo(settings, tmp_path)
    process(settings)
    before = raw_item(dynamodb, stack.names.table, media_id)
    ask(sqs, stack, media_id, "strict")
    logged = names(process(settings, "strict"))

    assert logged.count("reprocess_started") == 1  # the media's doing: never retried

    item = raw_item(dynamodb, stack.names.table, media_id)
    assert item is not None
    assert before is not None
    assert item["status"] == "READY"
    assert item["renditions"] == before["renditions"]
    assert item["metadata"] == before["metadata"]
    strict = next(r for r in item["stages"] if r["name"] == "strict")
    assert (strict["outcome"], strict["detail"]) == ("failed", "refused by the strict stage")
    assert "event_pending" not in item  # no news: nothing new arrived
    assert queue_counts(sqs, stack.backfill_dlq_url) == (0, 0)


def test_a_rendition_that_fails_its_check_is_never_published_and_the_try_is_ours(
    plugin: Path, settings: Settings, stack: Stack, tmp_path: Path, s3: Any, sqs: Any, dynamodb: Any
) -> None:
    media_id = ready_photo(settings, tmp_path)
    process(settings)
    before = raw_item(dynamodb, stack.names.table, media_id)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=stack.names.renditions_bucket)["Contents"]}
    ask(sqs, stack, media_id, "liar")
    logged = names(process(settings, "liar"))

    assert logged.count("reprocess_rendition_invalid") == 3  # every try, then the DLQ
    assert raw_item(dynamodb, stack.names.table, media_id) == before
    listed = s3.list_objects_v2(Bucket=stack.names.renditions_bucket)["Contents"]
    assert {o["Key"] for o in listed} == keys
    assert queue_counts(sqs, stack.backfill_dlq_url)[0] == 1


def test_a_request_for_a_stage_this_worker_lacks_is_left_for_one_that_has_it(
    plugin: Path, settings: Settings, stack: Stack, tmp_path: Path, sqs: Any, dynamodb: Any
) -> None:
    media_id = ready_photo(settings, tmp_path)
    process(settings)
    before = raw_item(dynamodb, stack.names.table, media_id)
    ask(sqs, stack, media_id, "previewdigest")
    logged = names(process(settings))  # a worker of the deploy before the plugin

    assert logged.count("reprocess_stage_not_installed") == 3  # every try, then the DLQ
    assert raw_item(dynamodb, stack.names.table, media_id) == before
    assert queue_counts(sqs, stack.backfill_dlq_url)[0] == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"version": 2}, "reprocess request version 2 is not one this worker reads"),
        ({"mode": "sometimes"}, "mode: Input should be 'missing', 'outdated' or 'all'"),
        ({"stage": "publish"}, "stage 'publish' is final"),
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
    ],
)
def test_a_malformed_request_goes_to_the_dlq_and_the_worker_carries_on(
    body: dict[str, Any],
    reason: str,
    plugin: Path,
    settings: Settings,
    stack: Stack,
    tmp_path: Path,
    sqs: Any,
) -> None:
    media_id = "0" * 32
    valid = json.loads(new_request(media_id, "previewdigest", "missing", utc_now(), "r").body())
    sqs.send_message(QueueUrl=stack.backfill_queue_url, MessageBody=json.dumps({**valid, **body}))
    events = process(settings, "previewdigest")

    malformed = [e for e in events if e.get("event") == "malformed_message"]
    assert len(malformed) == 3  # every try, until SQS moves it (maxReceiveCount 3)
    assert all(reason in str(e["reason"]) for e in malformed)
    assert queue_counts(sqs, stack.backfill_dlq_url)[0] == 1


def test_a_reprocess_holds_what_its_stage_asks_for_beyond_the_jobs_share(
    plugin: Path, settings: Settings, stack: Stack, tmp_path: Path, sqs: Any, dynamodb: Any
) -> None:
    media_id = ready_photo(settings, tmp_path)
    process(settings)
    ask(sqs, stack, media_id, "bulky")
    process(settings, "bulky")

    item = raw_item(dynamodb, stack.names.table, media_id)
    assert item is not None
    assert item["status"] == "READY"
    # A small photo's share is one floor; the stage asked for three more.
    assert item["metadata"]["bulky_spool_held"] == 4 * NEED_FLOOR
