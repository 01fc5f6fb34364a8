"""`mediamill dlq`: read, move back and purge the dead-letter queues without the AWS console.

Every command reads the DLQ the same way (worker.ops.hold): each message once, hidden while the
command holds it, handed back at once unless the command deleted it. Moving a message back
sends a copy first and deletes the dead letter after, so a crash in between leaves a duplicate
(which the worker recognises) and never loses one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from mediamill_core.settings import Settings
from worker.ops.hold import HeldMessages
from worker.ops.lanes import (
    Lane,
    OpsClients,
    OpsError,
    dead_letter_lanes,
    find_lane,
    find_lanes,
)
from worker.ops.letters import DeadLetter, fetch_items, read_letter
from worker.queue import LaneName

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import SendMessageRequestTypeDef

Items = dict[str, dict[str, Any] | None]
# What a service answers for an action it does not have. moto's server answers an HTTP 500 with
# an HTML page ("The start_message_move_task action has not been implemented", in its log), so
# botocore can only report the status code as the error code; AWS itself always names its error.
# SQS's own refusals (UnsupportedOperation: a task already running on the queue, a FIFO queue)
# are reported instead: moving one by one beside a running task would only duplicate its work.
_NOT_AVAILABLE = {"500", "501", "NotImplemented", "InvalidAction"}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+)([smhdw])")


@dataclass(slots=True)
class LaneLetters:
    """One DLQ as read: its messages, and how many SQS thinks it holds."""

    lane: Lane
    approximate: int
    letters: list[DeadLetter]
    truncated: bool


@dataclass(slots=True)
class DeadLetters:
    queues: list[LaneLetters]
    items: Items
    # Lanes whose queue has no redrive policy: nothing of theirs is ever dead-lettered.
    without_dlq: list[Lane]
    # Messages SQS did not let the walk hand back at once: hidden until their hold lapses.
    not_handed_back: int = 0

    @property
    def letters(self) -> list[DeadLetter]:
        return [letter for queue in self.queues for letter in queue.letters]


def read_dead_letters(
    clients: OpsClients, settings: Settings, queue: LaneName | None, *, limit: int | None = None
) -> DeadLetters:
    """Every message of the DLQ(s), each once, with the items they name."""
    lanes = find_lanes(clients.sqs, settings, queue)
    queues = []
    refused = 0
    for lane in dead_letter_lanes(lanes):
        assert lane.dlq_url is not None
        approximate = _approximate_count(clients, lane.dlq_url)
        with HeldMessages(clients.sqs, lane.dlq_url) as held:
            letters = [read_letter(lane.name, m) for page in held.pages(limit) for m in page]
        refused += held.visibility_failures
        truncated = limit is not None and len(letters) >= limit
        queues.append(LaneLetters(lane, approximate, letters, truncated))
    ids = {media_id for q in queues for letter in q.letters for media_id in letter.media_ids}
    items = fetch_items(clients.dynamodb, settings.table, ids)
    without = [lane for lane in lanes if lane.dlq_url is None]
    return DeadLetters(queues, items, without, not_handed_back=refused)


def find_dead_letter(
    clients: OpsClients, settings: Settings, message_id: str
) -> tuple[DeadLetter, Items]:
    """One message of the DLQs by its id (the walk stops once found), with its items."""
    for lane in dead_letter_lanes(find_lanes(clients.sqs, settings, None)):
        assert lane.dlq_url is not None
        with HeldMessages(clients.sqs, lane.dlq_url) as held:
            for page in held.pages():
                for message in page:
                    if message["MessageId"] == message_id:
                        letter = read_letter(lane.name, message)
                        return letter, fetch_items(
                            clients.dynamodb, settings.table, set(letter.media_ids)
                        )
    raise OpsError(f"no message {message_id} in the dead-letter queue(s)")


@dataclass(slots=True)
class Moved:
    letter: DeadLetter
    destination: str


@dataclass(slots=True)
class RedriveReport:
    dry_run: bool
    moved: list[Moved] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    # StartMessageMoveTask tasks started: queue, destination, task handle, messages then.
    tasks: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    items: Items = field(default_factory=dict)


def redrive(
    clients: OpsClients,
    settings: Settings,
    *,
    ids: list[str] | None,
    to: LaneName | None,
    queue: LaneName | None,
    dry_run: bool,
) -> RedriveReport:
    """Move dead letters back: all of them (``ids`` None) or those named.

    All of them go by StartMessageMoveTask, SQS's own redrive, where the service has it: back to
    the queue each came from, or to ``to``. Named ones, and all where the service has no move
    task (moto), go one by one: received, sent to the destination with their body and message
    attributes, then deleted.
    """
    lanes = find_lanes(clients.sqs, settings, queue)
    sources = dead_letter_lanes(lanes)
    if not sources:
        raise OpsError("no dead-letter queue: the queue(s) have no redrive policy")
    destination = find_lane(clients.sqs, settings, to) if to is not None else None
    report = RedriveReport(dry_run=dry_run)
    for lane in sources:
        if ids is None and not dry_run:
            unavailable = _start_move_task(clients, lane, destination, report)
            if unavailable is None:
                continue
            report.notes.append(
                f"StartMessageMoveTask is not available here ({unavailable}): moving the "
                f"{lane.name} DLQ's messages one by one (receive, send, delete)"
            )
        wanted = None if ids is None else _not_seen(ids, report)
        if wanted == []:
            break  # every one named is found: the other DLQs need no reading
        _move_one_by_one(clients, lane, destination or lane, wanted, report)
    if ids is not None:
        report.missing = _not_seen(ids, report)
    media_ids = {m for moved in report.moved for m in moved.letter.media_ids}
    report.items = fetch_items(clients.dynamodb, settings.table, media_ids)
    return report


def _not_seen(ids: list[str], report: RedriveReport) -> list[str]:
    seen = {moved.letter.message_id for moved in report.moved}
    seen |= {message_id for message_id, _ in report.failed}
    return [message_id for message_id in ids if message_id not in seen]


def _start_move_task(
    clients: OpsClients, lane: Lane, destination: Lane | None, report: RedriveReport
) -> str | None:
    """Start SQS's own redrive; None once started, else why the service cannot."""
    assert lane.dlq_arn is not None
    assert lane.dlq_url is not None
    approximate = _approximate_count(clients, lane.dlq_url)
    try:
        if destination is None:  # SQS sends each message back to the queue it came from
            answer = clients.one_try.sqs.start_message_move_task(SourceArn=lane.dlq_arn)
        else:
            answer = clients.one_try.sqs.start_message_move_task(
                SourceArn=lane.dlq_arn, DestinationArn=destination.queue_arn
            )
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in _NOT_AVAILABLE:
            return f"{code} from StartMessageMoveTask"
        raise OpsError(
            f"StartMessageMoveTask on the {lane.name} DLQ failed: {code}: {error.get('Message')}"
            " (move messages by id with --id, or fix the cause and try again)"
        ) from None
    report.tasks.append(
        {
            "queue": lane.name,
            "dlq_arn": lane.dlq_arn,
            "destination": destination.name if destination else f"{lane.name} (its source)",
            "task_handle": answer.get("TaskHandle"),
            "approximate_messages": approximate,
        }
    )
    return None


def _move_one_by_one(
    clients: OpsClients,
    lane: Lane,
    target: Lane,
    ids: list[str] | None,
    report: RedriveReport,
) -> None:
    assert lane.dlq_url is not None
    wanted = None if ids is None else set(ids)
    with HeldMessages(clients.sqs, lane.dlq_url) as held:
        for page in held.pages():
            chosen = [m for m in page if wanted is None or m["MessageId"] in wanted]
            letters = {m["MessageId"]: read_letter(lane.name, m) for m in chosen}
            if report.dry_run:
                report.moved.extend(Moved(letter, target.name) for letter in letters.values())
            else:
                sent = []
                for message in chosen:
                    try:
                        clients.sqs.send_message(**_copy_of(message, target.queue_url))
                    except ClientError as exc:
                        report.failed.append((message["MessageId"], f"not sent: {exc}"))
                        continue
                    sent.append(message["MessageId"])
                # Deleted only once sent: a crash here leaves a duplicate, never a loss.
                not_deleted = held.delete(sent)
                for message_id in sent:
                    if message_id in not_deleted:
                        report.failed.append(
                            (
                                message_id,
                                f"sent, but not deleted from the DLQ ({not_deleted[message_id]}):"
                                " the worker will see it twice, which it tolerates",
                            )
                        )
                    else:
                        report.moved.append(Moved(letters[message_id], target.name))
            if wanted is not None:
                wanted -= set(letters)
                if not wanted:
                    return


def _copy_of(message: dict[str, Any], queue_url: str) -> SendMessageRequestTypeDef:
    """The same body and message attributes (and X-Ray trace header), for another queue."""
    request: SendMessageRequestTypeDef = {"QueueUrl": queue_url, "MessageBody": message["Body"]}
    attributes = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        kept = {k: value[k] for k in ("DataType", "StringValue", "BinaryValue") if k in value}
        attributes[name] = kept
    if attributes:
        request["MessageAttributes"] = attributes  # type: ignore[typeddict-item]
    trace = (message.get("Attributes") or {}).get("AWSTraceHeader")
    if trace:
        request["MessageSystemAttributes"] = {
            "AWSTraceHeader": {"DataType": "String", "StringValue": trace}
        }
    return request


@dataclass(slots=True)
class PurgeReport:
    older_than_seconds: float
    candidates: list[DeadLetter] = field(default_factory=list)
    removed: list[DeadLetter] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    cancelled: bool = False
    items: Items = field(default_factory=dict)


def purge(
    clients: OpsClients,
    settings: Settings,
    *,
    older_than_seconds: float,
    queue: LaneName | None,
    confirm: Callable[[PurgeReport], bool] | None,
) -> PurgeReport:
    """Delete the dead letters sent longer ago than the age given, and nothing else.

    The messages are read, shown to ``confirm`` (None: no question asked) and handed back; the
    deletion is a second pass over what is there then, so a person may take their time to
    answer and a message moved back meanwhile is not deleted.
    """
    lanes = dead_letter_lanes(find_lanes(clients.sqs, settings, queue))
    report = PurgeReport(older_than_seconds)
    for lane in lanes:
        assert lane.dlq_url is not None
        with HeldMessages(clients.sqs, lane.dlq_url) as held:
            for page in held.pages():
                letters = [read_letter(lane.name, m) for m in page]
                report.candidates += [x for x in letters if _older(x, older_than_seconds)]
    ids = {m for letter in report.candidates for m in letter.media_ids}
    report.items = fetch_items(clients.dynamodb, settings.table, ids)
    if not report.candidates:
        return report
    if confirm is not None and not confirm(report):
        report.cancelled = True
        return report
    chosen = {letter.message_id for letter in report.candidates}
    for lane in lanes:
        assert lane.dlq_url is not None
        with HeldMessages(clients.sqs, lane.dlq_url) as held:
            for page in held.pages():
                letters = [read_letter(lane.name, m) for m in page]
                due = {
                    x.message_id: x
                    for x in letters
                    if x.message_id in chosen and _older(x, older_than_seconds)
                }
                failed = held.delete(list(due))
                report.failed += list(failed.items())
                report.removed += [x for i, x in due.items() if i not in failed]
    return report


def _older(letter: DeadLetter, seconds: float) -> bool:
    # SentTimestamp is when the message first entered the source queue: the DLQ's retention
    # counts from then too.
    age = letter.age_seconds(time.time())
    return age is not None and age > seconds


def parse_age(text: str) -> float:
    """ "7d", "12h", "90m", "1d12h" to seconds; ValueError says what is expected."""
    cleaned = text.strip().lower()
    parts = _DURATION.findall(cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise ValueError(f"{text!r} is not an age like 7d, 12h, 30m or 1d12h")
    seconds = float(sum(int(n) * _UNITS[u] for n, u in parts))
    if seconds <= 0:
        raise ValueError(f"{text!r} is no age at all: give one above zero")
    return seconds


def _approximate_count(clients: OpsClients, queue_url: str) -> int:
    attributes = clients.sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    ).get("Attributes", {})
    return int(attributes.get("ApproximateNumberOfMessages", "0"))
