"""`mediamill reprocess` against the moto stack's table and queue: what it picks and why, dry
runs, an interrupted run taken up again, and its errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from mediamill_core.items import encode
from mediamill_core.reprocess import parse_request
from mediamill_testkit.client import queue_counts
from worker.cli import main
from worker.dev.devstack import Stack

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]
OK = {"name": "probe", "version": "1.0.0", "outcome": "ok", "seconds": 0.1}


def put(dynamodb: Any, stack: Stack, **fields: Any) -> str:
    """A READY item as the worker leaves one, without a checksum record unless given."""
    media_id = uuid.uuid4().hex
    item = {
        "media_id": media_id,
        "owner": "alice",
        "status": "READY",
        "kind": "image",
        "created_at": "2025-03-01T10:00:00.000Z",
        "stages": [OK],
        **fields,
    }
    dynamodb.put_item(TableName=stack.names.table, Item=encode(item))
    return media_id


def checksum(outcome: str = "ok", version: str = "1.0.0") -> list[dict[str, Any]]:
    return [OK, {"name": "checksum", "version": version, "outcome": outcome, "seconds": 0.1}]


def received(sqs: Any, queue_url: str) -> list[str]:
    """The media ids of every request on the queue, each delivery once."""
    ids: list[str] = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        if not got.get("Messages"):
            return ids
        for message in got["Messages"]:
            request = parse_request(message["Body"])
            assert request is not None
            ids.append(request.media_id)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def cli(settings: Any, stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def run(*args: str) -> int:
        return main(["reprocess", "--stage", "checksum", "--queue-url", stack.queue_url, *args])

    return run


def test_missing_picks_no_record_deferred_failed_and_skipped_and_says_why_not_the_rest(
    cli: Any, stack: Stack, sqs: Any, dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    wanted = {
        put(dynamodb, stack): "missing",
        put(dynamodb, stack, stages=checksum("deferred")): "deferred",
        put(dynamodb, stack, stages=checksum("failed")): "failed",
        put(dynamodb, stack, stages=checksum("skipped")): "skipped",
    }
    put(dynamodb, stack, stages=checksum("ok"))
    put(dynamodb, stack, stages=checksum("warning", "0.9"))  # done, if by an older version
    put(dynamodb, stack, status="FAILED")
    put(dynamodb, stack, status="PROCESSING")

    assert cli("--dry-run") == 0
    out = capsys.readouterr().out
    rows = [line.split("\t") for line in out.splitlines() if "\t" in line]
    assert {row[0]: row[3] for row in rows} == wanted
    assert "would send 4, skipped 4" in out
    assert "skipped 2: done" in out
    assert "skipped 1: not READY (FAILED)" in out
    assert "skipped 1: not READY (PROCESSING)" in out
    assert queue_counts(sqs, stack.queue_url) == (0, 0)
    assert not (Path(os.environ["XDG_CACHE_HOME"]) / "mediamill").exists()

    assert cli() == 0
    assert sorted(received(sqs, stack.queue_url)) == sorted(wanted)
    shown = capsys.readouterr()
    assert "found 4, sent 4, skipped 4" in shown.out
    # Not a terminal: plain progress lines on stderr, the last one at the end.
    assert shown.err.splitlines()[-1] == "scanned 8 of about 8, found 4, sent 4"


def test_outdated_all_and_the_filters(
    cli: Any, stack: Stack, sqs: Any, dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    older = put(dynamodb, stack, stages=checksum("ok", "0.9.1"))
    failed_older = put(dynamodb, stack, stages=checksum("failed", "0.9.1"))
    put(dynamodb, stack, stages=checksum("ok", "1.0.0"))
    put(dynamodb, stack, stages=checksum("ok", "1.1.0"))  # a newer worker's: never downgraded
    video = put(dynamodb, stack, kind="video", owner="bob", created_at="2025-06-01T00:00:00.000Z")
    late = put(dynamodb, stack, created_at="2025-06-02T00:00:00.000Z")

    assert cli("--outdated") == 0
    assert sorted(received(sqs, stack.queue_url)) == sorted([older, failed_older])
    assert "skipped 4: up to date" in capsys.readouterr().out

    assert cli("--all", "--kind", "video") == 0
    assert received(sqs, stack.queue_url) == [video]
    assert cli("--all", "--owner", "bob") == 0  # through the by-owner index
    assert received(sqs, stack.queue_url) == [video]
    assert cli("--all", "--since", "2025-05-15") == 0
    assert sorted(received(sqs, stack.queue_url)) == sorted([video, late])
    assert cli("--all", "--owner", "alice", "--since", "2025-05-15T00:00:00+00:00") == 0
    assert received(sqs, stack.queue_url) == [late]
    out = capsys.readouterr().out
    assert "skipped 4: created before --since" in out


def test_an_interrupted_run_goes_on_with_no_duplicates_and_none_missed(
    cli: Any,
    stack: Stack,
    stack_env: dict[str, str],
    tmp_path: Path,
    sqs: Any,
    dynamodb: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wanted = {put(dynamodb, stack) for _ in range(60)}
    checkpoint = tmp_path / "run.json"
    env = {
        **stack_env,
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "AWS_ACCESS_KEY_ID": "dev",
        "AWS_SECRET_ACCESS_KEY": "dev",
    }
    args = ("--checkpoint", str(checkpoint), "--rate", "20")
    command = [sys.executable, "-m", "worker", "reprocess", "--stage", "checksum"]
    proc = subprocess.Popen(
        [*command, "--queue-url", stack.queue_url, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while queue_counts(sqs, stack.queue_url)[0] < 15:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (out, err)
    assert "run the same command again" in err
    saved = json.loads(checkpoint.read_text())
    first = received(sqs, stack.queue_url)
    assert saved["sent"] == len(first)
    assert 15 <= len(first) < 60

    assert cli(*args) == 0
    assert "resuming run" in capsys.readouterr().err
    second = received(sqs, stack.queue_url)
    assert len(first) + len(second) == 60
    assert set(first) | set(second) == wanted
    assert not checkpoint.exists()  # finished: nothing to go on from


def test_refusals_name_the_problem(
    cli: Any,
    stack: Stack,
    dynamodb: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert main(["reprocess", "--stage", "nope", "--dry-run"]) == 2
    assert "stage 'nope' is not installed or not enabled here" in capsys.readouterr().err
    assert main(["reprocess", "--stage", "publish", "--dry-run"]) == 2
    assert "is final" in capsys.readouterr().err
    monkeypatch.delenv("MEDIAMILL_BACKFILL_QUEUE_URL")  # a stack without a backfill queue
    assert main(["reprocess", "--stage", "checksum"]) == 2
    assert "MEDIAMILL_BACKFILL_QUEUE_URL" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reprocess", "--stage", "checksum", "--since", "last tuesday"])
    assert "is not a date like 2025-01-31" in capsys.readouterr().err

    # SQS refusing the queue stops the run, its checkpoint kept for the next try.
    put(dynamodb, stack)
    checkpoint = tmp_path / "c.json"
    gone = stack.queue_url + "-gone"
    code = main(
        ["reprocess", "--stage", "checksum", "--queue-url", gone, "--checkpoint", str(checkpoint)]
    )
    assert code == 1
    assert "run the same command again" in capsys.readouterr().err
    assert checkpoint.exists()
    assert cli("--checkpoint", str(checkpoint)) == 2  # other arguments: not overwritten
    assert "is of a run with other arguments" in capsys.readouterr().err
