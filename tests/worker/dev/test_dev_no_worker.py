"""`mediamill dev --no-worker`: the stack and API without a worker, and the env to run one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import boto3
import pytest

from mediamill_testkit.dev_process import dev_process, interrupt
from worker.dev.demo import DemoClient
from worker.dev.local_api import dev_token
from worker.dev.samples import write_png


@pytest.fixture
def dev_without_worker() -> Iterator[dict[str, Any]]:
    with dev_process("--no-worker") as (process, first):
        yield first
        assert interrupt(process) == 0


async def _upload(api: str, photo: Path) -> str:
    async with aiohttp.ClientSession() as http:
        media_id, _ = await DemoClient(http, api, dev_token("u")).upload(photo, lambda _: None)
        return media_id


async def _item(api: str, media_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        return await DemoClient(http, api, dev_token("u")).media(media_id)


def _visible(dev: dict[str, Any]) -> int:
    sqs = boto3.client("sqs", endpoint_url=dev["aws"], region_name=dev["region"])
    attributes = sqs.get_queue_attributes(
        QueueUrl=dev["resources"]["queue_url"], AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_no_worker_leaves_uploads_for_a_worker_run_with_the_printed_env(
    dev_without_worker: dict[str, Any], tmp_path: Path
) -> None:
    dev = dev_without_worker
    assert dev["metrics"] is None
    assert dev["healthz"] is None
    env = dev["worker_env"]
    assert env["MEDIAMILL_QUEUE_URL"] == dev["resources"]["queue_url"]
    assert env["MEDIAMILL_ENDPOINT_URL"] == dev["aws"]

    photo = write_png(tmp_path / "photo.png", 64, 48)
    media_id = anyio.run(_upload, dev["api"], photo)
    # Nobody consumes: the upload's message waits in the queue and the item is untouched.
    deadline = time.monotonic() + 10
    while _visible(dev) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)
    assert _visible(dev) >= 1
    assert anyio.run(_item, dev["api"], media_id)["status"] == "PENDING_UPLOAD"

    # A worker elsewhere, told only the printed environment, serves the stack in full.
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MEDIAMILL_"))}
    run = subprocess.run(
        [sys.executable, "-m", "worker", "worker", "--burst"],
        env={
            **clean,
            **env,
            "MEDIAMILL_METRICS_PORT": "0",
            "MEDIAMILL_RECEIVE_WAIT_SECONDS": "1",
            "MEDIAMILL_SPOOL_DIR": str(tmp_path / "spool"),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    item = anyio.run(_item, dev["api"], media_id)
    assert item["status"] == "READY", item
    # The stage options the dev stack needs reached it too: moto has no moderation API.
    assert item.get("warnings") in (None, []), item["warnings"]
