"""The stuck-items check: it counts only items PROCESSING longer than a try may take, one worker
at a time runs it, only that worker exports the count, and the worker runs it by itself."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog
from prometheus_client import CollectorRegistry, generate_latest

from mediamill_core.items import MediaStatus
from mediamill_core.settings import Settings, load_settings
from mediamill_testkit.client import Uploader, raw_item
from stages.probe.stage import ProbeStage
from worker import metrics
from worker.aws import open_clients
from worker.claims import ClaimOutcome, Lease, StoredObject
from worker.consumer import Worker
from worker.dev.devstack import Stack
from worker.dev.samples import write_png
from worker.metrics import HeldGauge
from worker.publish import PublishStage
from worker.registry import LoadedStage, StageRegistry, instantiate
from worker.store import MediaStore
from worker.stuck import CHECK_KEY, StuckCheck, stuck_after_seconds

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]
LOG = structlog.get_logger("test")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class QuickProbe(ProbeStage):
    timeout = 0.5


class QuickPublish(PublishStage):
    timeout = 0.5


def registry(*classes: type[Any]) -> StageRegistry:
    return StageRegistry([LoadedStage(stage=instantiate(c, None, c.name)) for c in classes])


def pending_item(settings: Settings, tmp_path: Path) -> str:
    """An item as POST /uploads makes it (PENDING_UPLOAD), with no object and so no event."""
    path = write_png(tmp_path / f"{secrets.token_hex(4)}.png", 8, 8)
    return str(Uploader(settings).create(path)["media_id"])


async def claim(store: MediaStore, media_id: str) -> str:
    """What a job's claim writes: PROCESSING, owed from now. Returns the object's tag."""
    tag = secrets.token_hex(6)
    obj = StoredObject(etag="e" * 32, size=8, version_id=None, sequencer=None, order=None, tag=tag)

    async def etag() -> str:
        return obj.etag

    lease = Lease(secrets.token_hex(8), f"message-{media_id}", 60)
    taken = await store.claim(
        media_id, obj, lease, receive_count=1, uploaded_at=None, current_etag=etag
    )
    assert taken.outcome is ClaimOutcome.CLAIMED
    return tag


def exported(gauge_registry: CollectorRegistry) -> list[str]:
    text = generate_latest(gauge_registry).decode()
    return [line for line in text.splitlines() if line.startswith("mediamill_stuck_items")]


def check(
    aws: Any, settings: Settings, *, after: float, interval: float = 30.0
) -> tuple[StuckCheck, CollectorRegistry]:
    """A worker's check, exporting to a registry of its own (as a worker process has)."""
    own = CollectorRegistry()
    return StuckCheck(
        dynamodb=aws.dynamodb,
        table=settings.table,
        stuck_after_seconds=after,
        interval_seconds=interval,
        log=LOG,
        gauge=HeldGauge("mediamill_stuck_items", "test", registry=own),
    ), own


def test_the_limit_is_a_try_and_the_wait_for_the_next(settings: Settings) -> None:
    # probe 60 s then publish 900 s; grace 10, spool wait 60; backoff at most 2, visibility 30.
    limit = stuck_after_seconds(settings, registry(ProbeStage, PublishStage))
    assert limit == 960 + 10 + 60 + 2 + 30


async def test_only_processing_items_older_than_the_limit_are_counted(
    settings: Settings, stack: Stack, dynamodb: Any, tmp_path: Path
) -> None:
    ids = {name: pending_item(settings, tmp_path) for name in ("old", "ready", "failed", "new")}
    pending_item(settings, tmp_path)  # never uploaded: not on the owed index at all
    async with open_clients(settings) as aws:
        store = MediaStore(aws.dynamodb, settings.table)
        tags = {name: await claim(store, ids[name]) for name in ("old", "ready", "failed")}
        common = {"kind": "image", "stages": [], "warnings": []}
        await store.mark_ready(
            ids["ready"],
            tags["ready"],
            lock_token="t",
            metadata={},
            location=None,
            renditions={},
            **common,
        )
        await store.mark_failed(
            ids["failed"],
            tags["failed"],
            lock_token="t",
            reason="bad",
            retryable=False,
            **common,
        )
        await anyio.sleep(1.5)
        await claim(store, ids["new"])
        stuck, scraped = check(aws, settings, after=1.0)

        assert await stuck.check_once() == 1

    # READY and FAILED items still owe their event, so they are on the index too, and old.
    for name in ("ready", "failed"):
        item = raw_item(dynamodb, stack.names.table, ids[name])
        assert item is not None
        assert item["event_pending"] is True
        assert item["status"] in (MediaStatus.READY.value, MediaStatus.FAILED.value)
    record = raw_item(dynamodb, stack.names.table, CHECK_KEY)
    assert record is not None
    assert record["stuck"] == 1
    assert record["examples"] == [ids["old"]]
    assert record["holder"] == stuck.token
    assert exported(scraped) == ["mediamill_stuck_items 1.0"]


async def test_one_worker_holds_the_check_and_only_it_exports_the_count(
    settings: Settings, tmp_path: Path
) -> None:
    media_id = pending_item(settings, tmp_path)
    async with open_clients(settings) as aws:
        await claim(MediaStore(aws.dynamodb, settings.table), media_id)
        first, first_scrape = check(aws, settings, after=0.0, interval=0.3)
        second, second_scrape = check(aws, settings, after=0.0, interval=0.3)

        assert await first.check_once() == 1
        assert await second.check_once() is None
        assert await first.check_once() == 1  # the holder renews
        assert exported(first_scrape) == ["mediamill_stuck_items 1.0"]
        assert exported(second_scrape) == []

        await first.give_up()  # a worker stopping hands the check on at once
        assert exported(first_scrape) == []
        assert await second.check_once() == 1
        assert exported(second_scrape) == ["mediamill_stuck_items 1.0"]

        await anyio.sleep(1.0)  # the holder stops renewing: its lease (3 intervals) lapses
        assert exported(second_scrape) == []  # no stale copy either
        assert await first.check_once() == 1
        assert await second.check_once() is None


async def test_the_worker_runs_the_check_and_exports_what_it_found(
    stack_env: dict[str, str],
    stack: Stack,
    dynamodb: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    quick = {
        "MEDIAMILL_VISIBILITY_TIMEOUT": "2",
        "MEDIAMILL_STAGE_GRACE_SECONDS": "0.1",
        "MEDIAMILL_SPOOL_WAIT_SECONDS": "0",
        "MEDIAMILL_SWEEP_INTERVAL_SECONDS": "0.5",
    }
    for name, value in {**stack_env, **quick}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    stages = registry(QuickProbe, QuickPublish)
    limit = stuck_after_seconds(settings, stages)
    assert limit == pytest.approx(0.5 + 0.5 + 0.1 + 0 + 2 + 2)
    media_id = pending_item(settings, tmp_path)
    async with open_clients(settings) as aws:
        await claim(MediaStore(aws.dynamodb, settings.table), media_id)
    claimed = time.monotonic()
    await anyio.sleep(limit + 0.5)

    worker = Worker(settings, stages)
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        for _ in range(200):  # the first check runs as the worker starts
            if metrics.STUCK_ITEMS.value() == 1:
                break
            await anyio.sleep(0.1)
        assert metrics.STUCK_ITEMS.value() == 1
        assert time.monotonic() - claimed > limit
        worker.request_stop()
    # Stopped: it exports nothing any more, and the check is free for another worker.
    assert metrics.STUCK_ITEMS.value() is None
    record = raw_item(dynamodb, stack.names.table, CHECK_KEY)
    assert record is not None
    assert record["examples"] == [media_id]
    assert "holder" not in record
