"""Reprocessing on the moto stack: a plugin installed after the fact, `mediamill reprocess`, and
the real worker running only that stage and merging its results into READY items."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client import REGISTRY

from mediamill_core.settings import Settings
from mediamill_testkit.backfill_stages import ENTRY_POINTS, UPGRADES
from mediamill_testkit.client import Uploader, drain_events, queue_counts, raw_item
from mediamill_testkit.plugin_dist import install_plugin
from mediamill_testkit.rekognition import THROTTLED, RekognitionServer, Reply
from worker.cli import main
from worker.consumer import Worker
from worker.dev import samples
from worker.dev.devstack import Stack
from worker.registry import StageRegistry

pytestmark = pytest.mark.timeout(240)
BUILT_IN = ("probe", "thumbnail", "transcode", "publish")


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test plugin installed, as `pip install` would leave it, in a directory on the path."""
    site = tmp_path / "site"
    install_plugin(site, "mediamill-backfill-test", "1.0", ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return site


def upgrade(site: Path) -> None:
    install_plugin(site, "mediamill-backfill-test", "2.0", {**ENTRY_POINTS, **UPGRADES})


def process(settings: Settings, *stages: str) -> None:
    """The real worker in burst mode, with the stages enabled as MEDIAMILL_STAGES would."""
    registry = StageRegistry.from_settings((*BUILT_IN, *stages), {})
    anyio.run(Worker(settings, registry, burst=True).run)


def reprocess(
    monkeypatch: pytest.MonkeyPatch, stack: Stack, *args: str, stages: tuple[str, ...]
) -> int:
    """`mediamill reprocess` as an operator runs it, onto the backfill queue."""
    monkeypatch.setenv("MEDIAMILL_STAGES", ",".join((*BUILT_IN, *stages)))
    return main(["reprocess", *args, "--queue-url", stack.backfill_queue_url])


def listing(s3: Any, bucket: str) -> dict[str, tuple[str, int]]:
    objects = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {entry["Key"]: (entry["ETag"], entry["Size"]) for entry in objects}


def without(item: dict[str, Any] | None, *names: str) -> dict[str, Any]:
    assert item is not None
    return {name: value for name, value in item.items() if name not in names}


def record(item: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    assert item is not None
    return next((r for r in item["stages"] if r["name"] == name), None)


def stage_runs(stage: str, kind: str = "image") -> float:
    value = REGISTRY.get_sample_value(
        "mediamill_stage_duration_seconds_count", {"stage": stage, "kind": kind, "outcome": "ok"}
    )
    return value or 0.0


def test_a_plugin_installed_later_reaches_every_item_and_nothing_else_changes(
    plugin: Path,
    settings: Settings,
    stack: Stack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    s3: Any,
    sqs: Any,
    dynamodb: Any,
    media_events: str,
) -> None:
    uploader = Uploader(settings)
    photos = [
        uploader.upload(samples.write_png(tmp_path / f"p{i}.png", 320 + 40 * i, 240))
        for i in range(3)
    ]
    photos.append(
        uploader.upload(
            samples.write_jpeg(tmp_path / "gps.jpg", 640, 480, gps=(48.85, 2.29), camera=True),
            "image/jpeg",
        )
    )
    video = uploader.upload(samples.write_video(tmp_path / "v.mp4", seconds=1.0), "video/mp4")
    process(settings)  # before the plugin is enabled
    table, bucket = stack.names.table, stack.names.renditions_bucket
    before = {media_id: raw_item(dynamodb, table, media_id) for media_id in [*photos, video]}
    assert all(item and item["status"] == "READY" for item in before.values())
    assert all(record(before[m], "previewdigest") is None for m in photos)
    objects = listing(s3, bucket)
    first_events = {e["media_id"]: e["event_id"] for e in drain_events(sqs, media_events)}
    thumbnails = stage_runs("thumbnail")

    assert reprocess(monkeypatch, stack, "--stage", "previewdigest", stages=("previewdigest",)) == 0
    summary = capsys.readouterr().out
    assert "found 4, sent 4, skipped 1" in summary
    assert "skipped 1: not for video" in summary
    process(settings, "previewdigest")

    after = {media_id: raw_item(dynamodb, table, media_id) for media_id in [*photos, video]}
    for media_id in photos:
        new, old = after[media_id], before[media_id]
        assert new is not None
        assert old is not None
        added = {k: v for k, v in new["metadata"].items() if k not in old["metadata"]}
        preview = s3.get_object(Bucket=bucket, Key=old["renditions"]["preview"]["key"])
        assert added["preview_sha256"] == hashlib.sha256(preview["Body"].read()).hexdigest()
        # Handed what the contract says: the declared rendition only, the stored kind and facts.
        assert added["digest_saw"] == {
            "renditions": ["preview"],
            "kind": "image",
            "width": old["metadata"]["width"],
            "original_bytes": old["source"]["size"],
        }
        assert {k: v for k, v in new["metadata"].items() if k in old["metadata"]} == (
            old["metadata"]
        )
        digest = record(new, "previewdigest")
        assert digest is not None
        assert digest["outcome"] == "ok"
        assert digest["version"] == "1.0.0"
        assert digest["reprocessed_at"] == new["reprocessed_at"]
        assert [r for r in new["stages"] if r["name"] != "previewdigest"] == old["stages"]
        assert new["stages"][-1]["name"] == "publish"  # the new record goes before publish
        # Everything else as it was: renditions, location, warnings, source, owner, status.
        ignore = ("metadata", "stages", "updated_at", "reprocessed_at", "rev")
        assert without(new, *ignore) == without(old, *ignore)
        assert new["rev"] == old["rev"] + 1
    assert after[video] == before[video]
    assert listing(s3, bucket) == objects
    assert stage_runs("thumbnail") == thumbnails  # reused, never run again
    # Consumers hear of the new metadata, under a new event id.
    events = drain_events(sqs, media_events)
    assert sorted(e["media_id"] for e in events) == sorted(photos)
    assert all(e["type"] == "media.processed" for e in events)
    assert all(e["event_id"] != first_events[e["media_id"]] for e in events)
    assert all("location" not in json.dumps(e) for e in events)
    assert queue_counts(sqs, stack.backfill_queue_url) == (0, 0)
    assert queue_counts(sqs, stack.backfill_dlq_url) == (0, 0)

    # Run twice: nothing is owed any more, and nothing is sent.
    assert reprocess(monkeypatch, stack, "--stage", "previewdigest", stages=("previewdigest",)) == 0
    assert "found 0, sent 0, skipped 5" in capsys.readouterr().out
    assert queue_counts(sqs, stack.backfill_queue_url) == (0, 0)


def test_outdated_picks_only_items_done_by_an_older_version(
    plugin: Path,
    settings: Settings,
    stack: Stack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    sqs: Any,
    dynamodb: Any,
) -> None:
    uploader = Uploader(settings)
    old = [uploader.upload(samples.write_png(tmp_path / f"o{i}.png", 200, 150)) for i in range(2)]
    process(settings, "previewdigest")
    upgrade(plugin)
    new = uploader.upload(samples.write_png(tmp_path / "n.png", 200, 150))
    process(settings, "previewdigest")
    table = stack.names.table
    current = raw_item(dynamodb, table, new)

    args = ("--stage", "previewdigest", "--outdated")
    assert reprocess(monkeypatch, stack, *args, "--dry-run", stages=("previewdigest",)) == 0
    listed = [line.split("\t") for line in capsys.readouterr().out.splitlines() if "\t" in line]
    assert sorted(row[0] for row in listed) == sorted(old)
    assert {row[3] for row in listed} == {"outdated"}
    assert queue_counts(sqs, stack.backfill_queue_url) == (0, 0)  # a dry run sends nothing

    assert reprocess(monkeypatch, stack, *args, stages=("previewdigest",)) == 0
    assert "found 2, sent 2, skipped 1" in capsys.readouterr().out
    process(settings, "previewdigest")
    for media_id in old:
        item = raw_item(dynamodb, table, media_id)
        assert item is not None
        assert item["metadata"]["digest_version"] == "2.0.0"
        assert (record(item, "previewdigest") or {})["version"] == "2.0.0"
    assert raw_item(dynamodb, table, new) == current


@pytest.fixture
def rekognition() -> Iterator[RekognitionServer]:
    server = RekognitionServer()
    server.start()
    yield server
    server.stop()


def test_deferred_tagging_is_done_later_from_the_stored_preview(
    settings: Settings,
    stack: Stack,
    stack_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rekognition: RekognitionServer,
    s3: Any,
    dynamodb: Any,
) -> None:
    monkeypatch.setenv("MEDIAMILL_REKOGNITION_ENDPOINT_URL", rekognition.endpoint)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    settings = settings.model_copy(update={"rekognition_endpoint_url": rekognition.endpoint})
    assert settings.endpoint_url is not None
    rekognition.reads_s3(settings.endpoint_url, settings.region)
    rekognition.answer("DetectLabels", THROTTLED)
    media_id = Uploader(settings).upload(
        samples.write_jpeg(tmp_path / "cat.jpg", 800, 600), "image/jpeg"
    )
    registry = StageRegistry.from_settings(
        (*BUILT_IN, "tagging"), {"tagging": {"retry": {"attempts": 1}}}
    )
    anyio.run(Worker(settings, registry, burst=True).run)
    table, bucket = stack.names.table, stack.names.renditions_bucket
    before = raw_item(dynamodb, table, media_id)
    assert before is not None
    assert before["status"] == "READY"
    assert (record(before, "tagging") or {})["outcome"] == "deferred"
    assert before["metadata"]["moderation"]["status"] == "deferred"

    rekognition.requests.clear()
    rekognition.answer(
        "DetectLabels", Reply(body={"Labels": [{"Name": "Cat", "Confidence": 97.5}]})
    )
    rekognition.answer("DetectModerationLabels", Reply(body={"ModerationLabels": []}))
    assert reprocess(monkeypatch, stack, "--stage", "tagging", stages=("tagging",)) == 0
    thumbnails = stage_runs("thumbnail")
    process(settings, "tagging")

    item = raw_item(dynamodb, table, media_id)
    assert item is not None
    assert item["status"] == "READY"
    assert [tag["name"] for tag in item["metadata"]["tags"]] == ["Cat"]
    assert item["metadata"]["moderation"] == {"status": "done", "labels": [], "needs_review": False}
    assert (record(item, "tagging") or {})["outcome"] == "ok"
    assert item["warnings"] == []  # the deferral's warning went with it
    # Tagged from the preview stored in S3; thumbnail never ran again.
    preview = s3.get_object(Bucket=bucket, Key=before["renditions"]["preview"]["key"])
    assert [call.image for call in rekognition.calls("DetectLabels")] == [preview["Body"].read()]
    # Pointed at the stored preview, which is neither sent nor stored again.
    assert [call.s3_object for call in rekognition.calls("DetectLabels")] == [
        {"Bucket": bucket, "Name": before["renditions"]["preview"]["key"]}
    ]
    assert stage_runs("thumbnail") == thumbnails
    assert item["renditions"] == before["renditions"]
