"""`mediamill dlq` on the moto stack: messages put in the DLQ the way SQS does it, then read,
shown, moved back (selectively and all, by the fallback path moto needs) and purged by age."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mediamill_core.settings import Settings
from mediamill_testkit.client import Uploader, queue_counts, raw_item
from mediamill_testkit.dead_letters import bury, failed_retryable_upload, process
from mediamill_testkit.move_tasks import MoveTaskEndpoint, refused
from worker.cli import main
from worker.dev.devstack import Stack
from worker.dev.samples import write_png
from worker.ops.dlq import parse_age
from worker.ops.hold import HeldMessages

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

GARBAGE = [f"not an upload #{n}" for n in range(11)] + ['{"Records": "nope"}']


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture
async def dead(settings: Settings, stack: Stack, sqs: Any, tmp_path: Path) -> str:
    """The DLQ with 13 messages: 12 malformed ones and a FAILED (retryable) upload's event."""
    media_id = await failed_retryable_upload(settings, write_png(tmp_path / "photo.png", 64, 48))
    bury(sqs, stack.queue_url, stack.dlq_url, GARBAGE)
    assert queue_counts(sqs, stack.dlq_url) == (13, 0)
    return media_id


def upload_letter(listed: list[dict[str, Any]]) -> dict[str, Any]:
    [letter] = [entry for entry in listed if entry["shape"] == "upload"]
    return letter


async def test_list_reads_every_message_once_and_leaves_them_in_place(
    dead: str, stack: Stack, sqs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "dlq", "list", "--json")

    assert status == 0
    listed = lines(out)
    assert len(listed) == 13
    assert len({entry["message_id"] for entry in listed}) == 13
    assert sorted(e["problem"] is not None for e in listed) == [False] + [True] * 12
    letter = upload_letter(listed)
    assert letter["queue"] == "media"
    assert letter["media_ids"] == [dead]
    item = letter["items"][dead]
    assert item["status"] == "FAILED"
    assert item["error_retryable"] is True
    assert "after 3 attempts" in item["error"]
    assert item["receive_count"] == 3
    [carried] = letter["uploads"]
    assert carried["event_name"].startswith("ObjectCreated:")
    assert carried["key"] == f"originals/{dead}"
    assert carried["size"] > 0
    assert carried["event_time"]
    assert letter["receive_count"] >= 4  # its three tries, then the receive that moved it
    assert letter["sent_at"] <= letter["first_received_at"]
    assert letter["on_redrive"] == ["processed again (FAILED on our side, retryable)"]
    malformed = [e for e in listed if e["shape"] == "malformed"]
    assert all("not JSON" in e["problem"] or "Records" in e["problem"] for e in malformed)
    assert all(e["media_ids"] == [] and e["items"] == {} for e in malformed)
    # Handed back at once: all visible again, and a second read sees the same ones.
    assert queue_counts(sqs, stack.dlq_url) == (13, 0)
    _, again, _ = run(capsys, "dlq", "list", "--json")
    assert {e["message_id"] for e in lines(again)} == {e["message_id"] for e in listed}


async def test_list_as_a_table_names_the_item_and_the_event(
    dead: str, stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "dlq", "list")

    assert status == 0
    assert f"media DLQ {stack.names.dlq}: 13 message(s)" in out
    assert dead in out
    assert "FAILED (retryable): processing failed after 3 attempts" in out
    assert f"originals/{dead}" in out
    assert out.count("malformed: ") == 12


def test_a_page_of_held_messages_is_not_received_again(stack: Stack, sqs: Any) -> None:
    bury(sqs, stack.queue_url, stack.dlq_url, GARBAGE)
    with HeldMessages(sqs, stack.dlq_url) as held:
        first = next(held.pages())
        assert len(first) == 10
        assert queue_counts(sqs, stack.dlq_url) == (2, 10)  # the page is hidden while held
        rest = [m["MessageId"] for page in held.pages() for m in page]
    assert len(rest) == 2
    assert not {m["MessageId"] for m in first} & set(rest)
    assert queue_counts(sqs, stack.dlq_url) == (12, 0)


def test_a_long_walk_keeps_what_it_holds_hidden(stack: Stack, sqs: Any) -> None:
    bury(sqs, stack.queue_url, stack.dlq_url, [f"letter {n}" for n in range(25)])
    with HeldMessages(sqs, stack.dlq_url, hold_seconds=2) as held:
        pages = held.pages()
        next(pages)
        time.sleep(1.2)
        next(pages)  # half the hold has passed: the first page is hidden for longer
        time.sleep(1.2)  # past the first page's own hold
        assert queue_counts(sqs, stack.dlq_url) == (5, 20)
    assert queue_counts(sqs, stack.dlq_url) == (25, 0)


async def test_show_prints_one_message_in_full_with_its_item(
    dead: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = run(capsys, "dlq", "list", "--json")
    message_id = upload_letter(lines(out))["message_id"]

    status, out, _ = run(capsys, "dlq", "show", message_id, "--json")
    assert status == 0
    [shown] = lines(out)
    assert shown["message_id"] == message_id
    assert shown["body"]["Type"] == "Notification"
    assert shown["attributes"]["ApproximateReceiveCount"]
    assert shown["items"][dead]["status"] == "FAILED"
    assert shown["items"][dead]["stages"]  # the full item, provenance included

    status, out, _ = run(capsys, "dlq", "show", message_id)
    assert status == 0
    assert "the SNS envelope's Message, parsed:" in out
    assert '"eventName": "ObjectCreated:' in out
    assert f"item {dead}: FAILED (retryable)" in out
    assert "on redrive: processed again" in out

    status, _, err = run(capsys, "dlq", "show", "no-such-message")
    assert status == 1
    assert "no message no-such-message in the dead-letter queue(s)" in err


async def test_redrive_by_id_moves_only_that_message_and_the_worker_finishes_it(
    dead: str,
    settings: Settings,
    stack: Stack,
    sqs: Any,
    dynamodb: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, out, _ = run(capsys, "dlq", "list", "--json")
    message_id = upload_letter(lines(out))["message_id"]

    status, out, _ = run(capsys, "dlq", "redrive", "--id", message_id, "--dry-run", "--json")
    assert status == 0
    [planned] = lines(out)
    assert planned["dry_run"] is True
    assert [m["message_id"] for m in planned["moved"]] == [message_id]
    assert queue_counts(sqs, stack.dlq_url) == (13, 0)

    status, out, _ = run(capsys, "dlq", "redrive", "--id", message_id, "--json")
    assert status == 0
    [report] = lines(out)
    assert [(m["message_id"], m["from"], m["to"]) for m in report["moved"]] == [
        (message_id, "media", "media")
    ]
    assert report["failed"] == report["missing"] == []
    assert queue_counts(sqs, stack.dlq_url) == (12, 0)
    assert queue_counts(sqs, stack.queue_url) == (1, 0)

    await process(settings)

    item = raw_item(dynamodb, stack.names.table, dead)
    assert item is not None
    assert item["status"] == "READY"
    assert "error" not in item
    assert queue_counts(sqs, stack.queue_url) == (0, 0)


async def test_redrive_of_an_id_not_there_says_so_and_fails(
    dead: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "dlq", "redrive", "--id", "gone-already")
    assert status == 1
    assert "not in the DLQ: gone-already" in out


async def test_redrive_all_falls_back_on_moto_and_keeps_body_and_attributes(
    settings: Settings, stack: Stack, sqs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    tagged = {"origin": {"DataType": "String", "StringValue": "by-hand"}}
    bury(sqs, stack.queue_url, stack.dlq_url, ["carried with attributes"], attributes=tagged)
    bury(sqs, stack.queue_url, stack.dlq_url, GARBAGE)

    status, out, _ = run(capsys, "dlq", "redrive", "--all")

    assert status == 0
    assert "StartMessageMoveTask is not available here (500 from StartMessageMoveTask)" in out
    assert "moved: 13 message(s)" in out
    assert queue_counts(sqs, stack.dlq_url) == (0, 0)
    bodies: dict[str, Any] = {}
    while len(bodies) < 13:
        got = sqs.receive_message(
            QueueUrl=stack.queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )
        for message in got.get("Messages", []):
            bodies[message["Body"]] = message.get("MessageAttributes")
            sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])
    assert set(bodies) == {"carried with attributes", *GARBAGE}
    assert bodies["carried with attributes"] == tagged


async def test_redrive_to_the_backfill_queue(
    stack: Stack,
    sqs: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    settings: Settings,
) -> None:
    monkeypatch.delenv("MEDIAMILL_BACKFILL_QUEUE_URL", raising=False)
    status, _, err = run(capsys, "dlq", "redrive", "--all", "--to", "backfill")
    assert status == 1
    assert "MEDIAMILL_BACKFILL_QUEUE_URL is not set" in err

    # A backfill queue of its own, with no redrive policy.
    backfill = sqs.create_queue(QueueName=f"{stack.names.prefix}-plain-lane")["QueueUrl"]
    monkeypatch.setenv("MEDIAMILL_BACKFILL_QUEUE_URL", backfill)
    bury(sqs, stack.queue_url, stack.dlq_url, GARBAGE[:3])

    status, out, _ = run(capsys, "dlq", "redrive", "--all", "--to", "backfill", "--json")

    assert status == 0
    [report] = lines(out)
    assert {m["to"] for m in report["moved"]} == {"backfill"}
    assert len(report["moved"]) == 3
    assert queue_counts(sqs, backfill) == (3, 0)
    assert queue_counts(sqs, stack.dlq_url) == (0, 0)
    # A backfill queue without a redrive policy has no DLQ, and the listing says so.
    status, out, _ = run(capsys, "dlq", "list")
    assert "the backfill queue has no redrive policy" in out


def test_purge_deletes_only_what_is_older_than_the_age(
    stack: Stack,
    sqs: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    settings: Settings,
) -> None:
    bury(sqs, stack.queue_url, stack.dlq_url, ["old one", "old two"])
    time.sleep(4)
    bury(sqs, stack.queue_url, stack.dlq_url, ["new one"])

    monkeypatch.setattr("builtins.input", lambda: "n")
    status, out, err = run(capsys, "dlq", "purge", "--older-than", "3s")
    assert status == 0
    assert "older than 3 s: 2 message(s)" in err
    assert "Delete these 2 message(s) for good? [y/N]" in err
    assert "nothing removed" in out
    assert queue_counts(sqs, stack.dlq_url) == (3, 0)

    monkeypatch.setattr("builtins.input", lambda: "y")
    status, out, _ = run(capsys, "dlq", "purge", "--older-than", "3s", "--json")
    assert status == 0
    [report] = lines(out)
    assert len(report["removed"]) == 2
    assert report["cancelled"] is False
    assert queue_counts(sqs, stack.dlq_url) == (1, 0)

    status, out, _ = run(capsys, "dlq", "purge", "--older-than", "1h", "--yes")
    assert status == 0
    assert "no message older than 60 min: nothing removed" in out
    with HeldMessages(sqs, stack.dlq_url) as held:
        assert [m["Body"] for page in held.pages() for m in page] == ["new one"]


def test_an_age_is_given_in_units(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_age("7d") == 7 * 86400
    assert parse_age("1d12h") == 36 * 3600
    assert parse_age("90m") == 5400
    for wrong in ("7", "7x", "d", "0h", "1h 2m"):
        with pytest.raises(ValueError, match="age"):
            parse_age(wrong)
    with pytest.raises(SystemExit):
        main(["dlq", "purge", "--older-than", "soon"])
    assert "is not an age like 7d" in capsys.readouterr().err


@pytest.fixture
def move_tasks(
    aws_endpoint: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MoveTaskEndpoint]:
    """SQS with message move tasks, as AWS has them: the commands' endpoint points here."""
    endpoint = MoveTaskEndpoint(aws_endpoint)
    monkeypatch.setenv("MEDIAMILL_ENDPOINT_URL", endpoint.start())
    yield endpoint
    endpoint.stop()


def test_redrive_all_starts_sqs_own_move_task_where_there_is_one(
    move_tasks: MoveTaskEndpoint, stack: Stack, sqs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    bury(sqs, stack.queue_url, stack.dlq_url, GARBAGE[:3])
    dlq_arn = sqs.get_queue_attributes(QueueUrl=stack.dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]

    status, out, _ = run(capsys, "dlq", "redrive", "--all", "--queue", "media", "--json")

    assert status == 0
    [report] = lines(out)
    assert move_tasks.requests == [{"SourceArn": dlq_arn}]  # back where each came from
    [task] = report["tasks"]
    assert task["task_handle"].startswith("task-")
    assert task["approximate_messages"] == 3
    assert report["moved"] == report["notes"] == []
    assert queue_counts(sqs, stack.dlq_url) == (3, 0)  # SQS moves them, not the command

    run(capsys, "dlq", "redrive", "--all", "--queue", "media", "--to", "media")
    assert move_tasks.requests[-1] == {"SourceArn": dlq_arn, "DestinationArn": stack.queue_arn}


def test_a_move_task_refused_for_a_reason_of_ours_is_reported_not_worked_around(
    move_tasks: MoveTaskEndpoint, stack: Stack, sqs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    bury(sqs, stack.queue_url, stack.dlq_url, GARBAGE[:2])
    for code, why in (
        ("AccessDenied", "not authorized to perform sqs:StartMessageMoveTask"),
        ("UnsupportedOperation", "a message movement task is already running on the queue"),
    ):
        move_tasks.reply = refused(code, why)

        status, _, err = run(capsys, "dlq", "redrive", "--all", "--queue", "media")

        assert status == 1
        assert f"StartMessageMoveTask on the media DLQ failed: {code}: {why}" in err
        assert "--id" in err
        assert queue_counts(sqs, stack.dlq_url) == (2, 0)


def test_a_message_the_destination_refuses_stays_in_the_dlq(
    settings: Settings,
    stack: Stack,
    sqs: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A destination that takes messages of 1 KiB at most refuses this one: sent first, deleted
    # only once sent, it is still there afterwards.
    small = sqs.create_queue(
        QueueName=f"{stack.names.prefix}-small-lane", Attributes={"MaximumMessageSize": "1024"}
    )["QueueUrl"]
    monkeypatch.setenv("MEDIAMILL_BACKFILL_QUEUE_URL", small)
    bury(sqs, stack.queue_url, stack.dlq_url, ["x" * 2048, "fits"])
    _, out, _ = run(capsys, "dlq", "list", "--json")
    ids = [entry["message_id"] for entry in lines(out)]

    status, out, _ = run(capsys, "dlq", "redrive", "--id", *ids, "--to", "backfill", "--json")

    assert status == 1
    [report] = lines(out)
    assert len(report["moved"]) == 1
    [failure] = report["failed"]
    assert failure["error"].startswith("not sent:")
    assert queue_counts(sqs, small) == (1, 0)
    with HeldMessages(sqs, stack.dlq_url) as held:
        assert [m["Body"] for page in held.pages() for m in page] == ["x" * 2048]


def test_a_reprocess_request_is_listed_with_its_item(
    settings: Settings, stack: Stack, sqs: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    media_id = Uploader(settings).create(write_png(tmp_path / "p.png", 8, 8))["media_id"]
    request = {
        "type": "mediamill.reprocess",
        "version": 1,
        "media_id": media_id,
        "stage": "tagging",
        "mode": "missing",
        "requested_at": "2026-01-01T00:00:00Z",
        "request_id": "r1",
    }
    bury(sqs, stack.queue_url, stack.dlq_url, [json.dumps(request)])

    status, out, _ = run(capsys, "dlq", "list", "--json")

    assert status == 0
    [letter] = lines(out)
    assert letter["shape"] == "reprocess"
    assert letter["media_ids"] == [media_id]
    assert letter["request"]["stage"] == "tagging"
    assert letter["items"][media_id]["status"] == "PENDING_UPLOAD"


def test_a_limit_below_one_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["dlq", "list", "--limit", "0"])
    assert "argument --limit: 0 is not 1 or more" in capsys.readouterr().err
