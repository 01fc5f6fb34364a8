"""The spool: dead workers' directories removed, live ones kept, and a budget on scratch space."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest
import structlog

from mediamill_core.keys import original_key
from mediamill_core.settings import Settings
from mediamill_testkit.client import Uploader, raw_item
from stages.contract import Job, Stage, StageResult, TransientError
from stages.probe.stage import ProbeStage
from worker import metrics
from worker.consumer import Worker
from worker.dev.devstack import Stack
from worker.dev.samples import write_png
from worker.publish import PublishStage
from worker.registry import LoadedStage, StageRegistry, instantiate
from worker.spool import NEED_FLOOR, Spool, SpoolTooSmall, bytes_needed, remove_abandoned

pytestmark = pytest.mark.anyio
MiB = 1024**2


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_a_killed_workers_spool_is_removed_and_a_live_ones_kept(tmp_path: Path) -> None:
    log = structlog.get_logger()
    live = Spool(tmp_path, 10 * NEED_FLOOR, log)
    live.open()
    (live.job_dir("m1") / "original").write_bytes(b"x" * 1000)
    # A worker killed with SIGKILL mid-job: its lock died with it, its files did not.
    script = (
        "import os, sys, structlog; from pathlib import Path; from worker.spool import Spool\n"
        f"s = Spool(Path({str(tmp_path)!r}), {10 * NEED_FLOOR}, structlog.get_logger()); s.open()\n"
        "(s.job_dir('m2') / 'original').write_bytes(b'y' * 1000)\n"
        "print(s.root, flush=True); os._exit(9)\n"
    )
    dead_root = Path(
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
        .stdout.strip()
        .splitlines()[-1]
    )
    assert dead_root.is_dir()
    unrelated = tmp_path / "mediamill-samples-abc"
    unrelated.mkdir()

    assert remove_abandoned(tmp_path) == 1
    assert not dead_root.exists()
    assert live.root.is_dir()
    assert unrelated.is_dir()  # the base may be a shared /tmp: only our own is touched
    live.close()
    assert not live.root.exists()


async def test_reservations_wait_for_space_and_give_up_in_time(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 3 * NEED_FLOOR, structlog.get_logger())
    spool.open()
    small = 1024
    assert bytes_needed(small) == NEED_FLOOR
    order: list[str] = []

    async def second() -> None:
        async with spool.reserve(small, wait_seconds=10):
            order.append("second")

    async with (
        anyio.create_task_group() as group,
        spool.reserve(NEED_FLOOR, wait_seconds=0),  # needs two floors
        spool.reserve(small, wait_seconds=0),
    ):
        group.start_soon(second)
        await anyio.sleep(0.3)
        assert order == []  # 3 floors reserved: it waits
        order.append("first")
    assert order == ["first", "second"]
    assert spool.reserved == 0

    with pytest.raises(SpoolTooSmall, match="scratch space"):
        async with spool.reserve(2 * NEED_FLOOR, wait_seconds=0):
            pass
    async with spool.reserve(NEED_FLOOR, wait_seconds=0):
        with pytest.raises(TransientError, match="left for later"):
            async with spool.reserve(NEED_FLOOR, wait_seconds=0.2):
                pass
    spool.close()


def budgeted(stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, budget: int) -> Settings:
    """The dev stack's settings with a spool budget of ``budget`` bytes."""
    for name, value in stack_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MEDIAMILL_SPOOL_BUDGET_BYTES", str(budget))
    return Settings()


async def test_an_upload_too_big_for_the_spool_is_retried_never_blamed_on_the_media(
    stack_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    stack: Stack,
    s3: Any,
    sqs: Any,
    dynamodb: Any,
    tmp_path: Path,
) -> None:
    settings = budgeted(stack_env, monkeypatch, NEED_FLOOR)
    photo = write_png(tmp_path / "p.png", 32, 32)
    media_id = Uploader(settings).create(photo)["media_id"]
    key = original_key(media_id)
    s3.put_object(Bucket=stack.names.originals_bucket, Key=key, Body=photo.read_bytes())
    sqs.purge_queue(QueueUrl=stack.queue_url)
    etag = s3.head_object(Bucket=stack.names.originals_bucket, Key=key)["ETag"].strip('"')
    # An event declaring a 100 MB upload: it needs more scratch space than the budget.
    record = {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Post",
        "eventTime": "2026-01-01T00:00:00.000Z",
        "s3": {
            "bucket": {"name": stack.names.originals_bucket},
            "object": {"key": key, "size": 100 * 1000**2, "eTag": etag, "sequencer": "0A"},
        },
    }
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody=json.dumps({"Records": [record]}))
    registry = StageRegistry(
        [LoadedStage(stage=instantiate(cls, None, cls.name)) for cls in (ProbeStage, PublishStage)]
    )
    for _ in range(stack.max_receive_count):
        await Worker(settings, registry, burst=True).run()
        item = raw_item(dynamodb, stack.names.table, media_id)
        assert item is not None
        if item["status"] == "FAILED":
            break
        await anyio.sleep(2.2)  # the retry backoff (MEDIAMILL_RETRY_MAX_SECONDS)
    # Retried on each delivery, and the item never blamed the media: its last try says why.
    assert item["status"] == "FAILED"
    assert item["error_retryable"] is True
    assert "scratch space" in item["error"]
    assert item["attempts"] == stack.max_receive_count


async def test_a_reservation_walks_the_spool_only_when_the_disk_is_tight_and_never_on_the_loop(
    monkeypatch: pytest.MonkeyPatch, mount_tmpfs: Callable[[str], Path]
) -> None:
    import threading

    from worker import spool as spool_module

    walks: list[threading.Thread] = []
    walk = spool_module._used

    def watched(root: Path) -> int:
        walks.append(threading.current_thread())
        return walk(root)

    monkeypatch.setattr(spool_module, "_used", watched)
    # A disk that holds two floors free, not three: the second reservation must look at it.
    disk = mount_tmpfs(f"size={2 * NEED_FLOOR + NEED_FLOOR // 2}")
    spool = Spool(disk, 2 * NEED_FLOOR, structlog.get_logger())
    spool.open()
    walks.clear()
    async with spool.reserve(1024, wait_seconds=5):
        # Free disk holds this reservation in full: what is written of it cannot matter.
        assert walks == []
        (spool.root / "written").write_bytes(b"x" * (NEED_FLOOR * 5 // 8))
        async with spool.reserve(1024, wait_seconds=5):
            pass
    # Walking a busy spool stats every file in it: a worker thread's job, not the loop's.
    assert walks
    assert threading.main_thread() not in walks
    spool.close()


class Bulky(Stage):
    """Says it writes three floors beyond the upload's share, and notes what the worker held."""

    name = "bulky"
    version = "1.0.0"
    requires = ("probe",)
    held: ClassVar[list[float]] = []

    def scratch_bytes(self, job: Job) -> int:
        return 3 * NEED_FLOOR

    async def run(self, job: Job) -> StageResult:
        self.held.append(metrics.SPOOL_RESERVED._value.get())
        return StageResult()


async def test_the_worker_holds_what_a_stage_asks_for_beyond_the_uploads_share(
    stack_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    stack: Stack,
    s3: Any,
    sqs: Any,
    dynamodb: Any,
    tmp_path: Path,
) -> None:
    settings = budgeted(stack_env, monkeypatch, 8 * NEED_FLOOR)
    photo = write_png(tmp_path / "p.png", 32, 32)
    media_id = Uploader(settings).create(photo)["media_id"]
    sqs.purge_queue(QueueUrl=stack.queue_url)
    s3.put_object(
        Bucket=stack.names.originals_bucket, Key=original_key(media_id), Body=photo.read_bytes()
    )
    Bulky.held = []
    registry = StageRegistry(
        [
            LoadedStage(stage=instantiate(cls, None, cls.name))
            for cls in (ProbeStage, Bulky, PublishStage)
        ]
    )
    await Worker(settings, registry, burst=True).run()
    item = raw_item(dynamodb, stack.names.table, media_id)
    assert item is not None
    assert item["status"] == "READY"
    assert Bulky.held == [4 * NEED_FLOOR]  # the upload's floor and the stage's three
    assert metrics.SPOOL_RESERVED._value.get() == 0
