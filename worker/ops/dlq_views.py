"""What the `mediamill dlq` commands print: tables for a person, JSON for a script."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from worker.ops.dlq import DeadLetters, Items, PurgeReport, RedriveReport
from worker.ops.hold import HOLD_SECONDS
from worker.ops.letters import DeadLetter, item_summary, letter_json, letter_outlook
from worker.ops.tables import clip, moment, print_table, size, span

_LIST_COLUMNS = (
    "queue",
    "message id",
    "media id",
    "item",
    "receives",
    "sent",
    "first received",
    "last try",
    "event",
)


def _emit(document: Any, out: TextIO) -> None:
    out.write(json.dumps(document, default=str) + "\n")


def item_cell(item: dict[str, Any] | None) -> str:
    """An item's status in one cell: FAILED (retryable): why."""
    if item is None:
        return "no item"
    status = str(item.get("status"))
    if status == "FAILED":
        status += " (retryable)" if item.get("error_retryable") else " (final)"
    error = item.get("error")
    return f"{status}: {clip(error, 48)}" if error else status


def _rows(letter: DeadLetter, items: Items) -> list[list[str]]:
    receives = str(letter.receive_count)
    times = [moment(letter.sent_at), moment(letter.first_received_at)]
    if letter.shape != "upload":
        media_id = letter.media_ids[0] if letter.media_ids else "-"
        item = items.get(media_id) if letter.media_ids else None
        what = f"{letter.shape}: {clip(letter.problem or json.dumps(letter.request), 60)}"
        last = moment(item.get("processing_started_at")) if item else "-"
        cell = item_cell(item) if letter.media_ids else "-"
        return [[letter.lane, letter.message_id, media_id, cell, receives, *times, last, what]]
    rows = []
    for upload in letter.uploads:
        item = items.get(upload.media_id or "")
        event = upload.event
        carried = f"{event.event_name} {upload.event.key} {size(event.size)}"
        if event.event_time is not None:
            carried += f" at {moment(event.event_time)}"
        last = moment(item.get("processing_started_at")) if item else "-"
        rows.append(
            [
                letter.lane,
                letter.message_id,
                upload.media_id or "(not an original)",
                item_cell(item),
                receives,
                *times,
                last,
                carried,
            ]
        )
    return rows


def print_dead_letters(found: DeadLetters, *, as_json: bool, out: TextIO | None = None) -> None:
    """`dlq list`: a table per DLQ, or one JSON object per message."""
    out = out or sys.stdout
    if as_json:
        for letter in found.letters:
            _emit(letter_json(letter, found.items), out)
        return
    for lane in found.without_dlq:
        out.write(f"the {lane.name} queue has no redrive policy: it has no DLQ\n")
    for queue in found.queues:
        title = f"{queue.lane.name} DLQ {queue.lane.dlq_name}: {len(queue.letters)} message(s)"
        if queue.truncated:
            title += f", the first of about {queue.approximate} (raise --limit for more)"
        if not queue.letters:
            out.write(title + "\n")
            continue
        rows = [row for letter in queue.letters for row in _rows(letter, found.items)]
        print_table(title + " (times UTC)", _LIST_COLUMNS, rows, out=out)
    if found.letters:
        out.write(
            "receives: SQS's count, reads of the DLQ included; an item's own count of worker "
            "tries is in `mediamill dlq show ID`\n"
        )
    if found.not_handed_back:
        out.write(
            f"note: SQS refused to hand back {found.not_handed_back} message(s) at once: they "
            f"reappear within {HOLD_SECONDS} s\n"
        )


def _pretty(body: str) -> str:
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return repr(body)


def show_json(letter: DeadLetter, items: Items) -> dict[str, Any]:
    document = letter_json(letter, items)
    try:
        document["body"] = json.loads(letter.body)
    except ValueError:
        document["body"] = letter.body
    document["attributes"] = letter.attributes
    document["message_attributes"] = letter.message_attributes
    document["items"] = {media_id: items.get(media_id) for media_id in letter.media_ids}
    return document


def print_letter(
    letter: DeadLetter, items: Items, *, as_json: bool, out: TextIO | None = None
) -> None:
    """`dlq show ID`: the message in full, and the item(s) it names."""
    out = out or sys.stdout
    if as_json:
        _emit(show_json(letter, items), out)
        return
    out.write(f"message {letter.message_id} in the {letter.lane} DLQ\n")
    out.write(f"shape: {letter.shape}" + (f": {letter.problem}" if letter.problem else "") + "\n")
    age = letter.age_seconds(time.time())
    out.write(
        f"sent {moment(letter.sent_at)} UTC ({span(age or 0)} ago), first received "
        f"{moment(letter.first_received_at)}, received {letter.receive_count} time(s) in all\n"
    )
    out.write("attributes:\n")
    for name, value in sorted(letter.attributes.items()):
        out.write(f"  {name}: {value}\n")
    if letter.message_attributes:
        out.write("message attributes:\n")
        for name, value in sorted(letter.message_attributes.items()):
            shown = value.get("StringValue", value.get("BinaryValue"))
            out.write(f"  {name} ({value.get('DataType')}): {shown}\n")
    out.write("body:\n" + _indent(_pretty(letter.body)) + "\n")
    inner = _sns_message(letter.body)
    if inner is not None:
        out.write("the SNS envelope's Message, parsed:\n" + _indent(_pretty(inner)) + "\n")
    for media_id in letter.media_ids:
        item = items.get(media_id)
        out.write(f"item {media_id}: {item_cell(item)}\n")
        if item is not None:
            out.write(_indent(json.dumps(item_summary(item), indent=2, default=str)) + "\n")
    for line in letter_outlook(letter, items):
        out.write(f"on redrive: {line}\n")


def _sns_message(body: str) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    message = document.get("Message") if isinstance(document, dict) else None
    return message if isinstance(message, str) else None


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def redrive_json(report: RedriveReport) -> dict[str, Any]:
    return {
        "dry_run": report.dry_run,
        "tasks": report.tasks,
        "moved": [
            {
                "message_id": moved.letter.message_id,
                "from": moved.letter.lane,
                "to": moved.destination,
                "media_ids": list(moved.letter.media_ids),
                "on_redrive": letter_outlook(moved.letter, report.items),
            }
            for moved in report.moved
        ],
        "failed": [{"message_id": i, "error": why} for i, why in report.failed],
        "missing": report.missing,
        "notes": report.notes,
    }


def print_redrive(report: RedriveReport, *, as_json: bool, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if as_json:
        _emit(redrive_json(report), out)
        return
    for note in report.notes:
        out.write(f"note: {note}\n")
    for task in report.tasks:
        out.write(
            f"StartMessageMoveTask started on the {task['queue']} DLQ, to {task['destination']}:"
            f" about {task['approximate_messages']} message(s), task {task['task_handle']}\n"
            f"  follow it: aws sqs list-message-move-tasks --source-arn {task['dlq_arn']}\n"
        )
    if report.moved:
        verb = "would move (dry run, nothing moved)" if report.dry_run else "moved"
        rows = [
            [
                moved.letter.message_id,
                f"{moved.letter.lane} DLQ",
                moved.destination,
                ", ".join(moved.letter.media_ids) or "-",
                "; ".join(letter_outlook(moved.letter, report.items)),
            ]
            for moved in report.moved
        ]
        columns = ("message id", "from", "to", "media id", "then the worker")
        print_table(f"{verb}: {len(report.moved)} message(s)", columns, rows, out=out)
    elif not report.tasks:
        out.write("nothing to move\n")
    for message_id, why in report.failed:
        out.write(f"failed: {message_id}: {why}\n")
    for message_id in report.missing:
        out.write(f"not in the DLQ: {message_id}\n")


def _purge_rows(letters: list[DeadLetter]) -> list[list[str]]:
    now = time.time()
    return [
        [
            letter.lane,
            letter.message_id,
            ", ".join(letter.media_ids) or "-",
            span(letter.age_seconds(now) or 0),
            letter.shape + (f": {clip(letter.problem, 50)}" if letter.problem else ""),
        ]
        for letter in letters
    ]


_PURGE_COLUMNS = ("queue", "message id", "media id", "age", "shape")


def ask_to_purge(report: PurgeReport, *, out: TextIO | None = None) -> bool:
    """Show what would go and ask; anything but yes (or nobody to answer) keeps it.

    On stderr, so that stdout holds only the result (`--json` stays parseable).
    """
    out = out or sys.stderr
    title = f"older than {span(report.older_than_seconds)}: {len(report.candidates)} message(s)"
    print_table(title, _PURGE_COLUMNS, _purge_rows(report.candidates), out=out)
    out.write(f"Delete these {len(report.candidates)} message(s) for good? [y/N] ")
    out.flush()
    try:
        answer = input()
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def print_purge(report: PurgeReport, *, as_json: bool, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if as_json:
        _emit(
            {
                "older_than_seconds": report.older_than_seconds,
                "cancelled": report.cancelled,
                "removed": [letter_json(x, report.items) for x in report.removed],
                "failed": [{"message_id": i, "error": why} for i, why in report.failed],
            },
            out,
        )
        return
    if report.cancelled:
        out.write("nothing removed\n")
        return
    if not report.removed and not report.failed:
        out.write(f"no message older than {span(report.older_than_seconds)}: nothing removed\n")
        return
    title = f"removed {len(report.removed)} message(s) older than {span(report.older_than_seconds)}"
    print_table(title, _PURGE_COLUMNS, _purge_rows(report.removed), out=out)
    for message_id, why in report.failed:
        out.write(f"not removed: {message_id}: {why}\n")
