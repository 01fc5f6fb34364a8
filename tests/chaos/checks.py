"""What must hold at the end of a chaos run, checked on what the run observed.

Pure functions of an :class:`Observation`, so each check is tested on its own against a made-up
state; each returns the violations it found, as sentences naming the media id.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker.events import MalformedMessage, parse_message

TERMINAL = ("READY", "FAILED")
EVENT_TYPE = {"READY": "media.processed", "FAILED": "media.failed"}


@dataclass(frozen=True, slots=True)
class Upload:
    """One upload the run made, and how it must end."""

    media_id: str
    key: str
    sample: str
    expect: str
    killer: bool = False


@dataclass(slots=True)
class Observation:
    """Everything the checks look at, gathered once the run has settled (or run out of time)."""

    uploads: list[Upload]
    items: dict[str, dict[str, Any] | None]
    events: list[dict[str, Any]]
    dlq_bodies: list[str]
    malformed_bodies: list[str]
    queue_counts: tuple[int, int]  # (visible, in flight) on the media queue
    missing_renditions: dict[str, list[str]] = field(default_factory=dict)
    exit_codes: dict[int, int | None] = field(default_factory=dict)
    spool_leftovers: list[str] = field(default_factory=list)


def terminal_as_expected(seen: Observation) -> list[str]:
    """Good uploads READY with their renditions stored; bad ones and the killer FAILED, with a
    reason."""
    found = []
    for upload in seen.uploads:
        item = seen.items.get(upload.media_id)
        what = f"{upload.media_id} ({upload.sample})"
        if item is None:
            found.append(f"{what}: the item is gone")
            continue
        status = item.get("status")
        if status != upload.expect:
            detail = f"; error: {item.get('error')}" if item.get("error") else ""
            found.append(f"{what}: {status}, expected {upload.expect}{detail}")
        elif status == "FAILED" and not str(item.get("error") or "").strip():
            found.append(f"{what}: FAILED without a reason")
        elif status == "READY" and not item.get("renditions"):
            found.append(f"{what}: READY without renditions")
        for key in seen.missing_renditions.get(upload.media_id, []):
            found.append(f"{what}: rendition {key} is not in the renditions bucket")
    return found


def nothing_stuck(seen: Observation) -> list[str]:
    """No item left PROCESSING (or waiting for its upload), and the media queue drained."""
    found = []
    for upload in seen.uploads:
        item = seen.items.get(upload.media_id) or {}
        status = item.get("status")
        if status is not None and status not in TERMINAL:
            found.append(f"{upload.media_id} ({upload.sample}): stuck in {status}")
    visible, in_flight = seen.queue_counts
    if visible or in_flight:
        found.append(f"media queue not drained: {visible} visible, {in_flight} in flight")
    return found


def every_outcome_announced(seen: Observation) -> list[str]:
    """Each READY or FAILED item has its event on the media topic, none owed, none after it
    that says otherwise."""
    by_media: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in seen.events:
        by_media[str(event.get("media_id"))].append(event)
    found = []
    for upload in seen.uploads:
        item = seen.items.get(upload.media_id) or {}
        status = item.get("status")
        if status not in TERMINAL:
            continue
        what = f"{upload.media_id} ({upload.sample}, {status})"
        events = by_media.get(upload.media_id, [])
        wanted = [e for e in events if e.get("type") == EVENT_TYPE[status]]
        if not wanted:
            sent = sorted({str(e.get("type")) for e in events}) or ["nothing"]
            found.append(f"{what}: {EVENT_TYPE[status]} never sent (sent: {', '.join(sent)})")
        else:
            last = max(str(e.get("occurred_at", "")) for e in wanted)
            later = [
                e
                for e in events
                if e.get("type") != EVENT_TYPE[status] and str(e.get("occurred_at", "")) > last
            ]
            if later:
                found.append(f"{what}: announced as {later[0].get('type')} after its outcome")
        if item.get("event_pending"):
            found.append(f"{what}: still owes its event (event_pending)")
    return found


def repeats_share_event_id(seen: Observation) -> list[str]:
    """Every event carries ``event_id`` and ``occurred_at``; a fact sent twice carries the same
    both times, and one ``event_id`` never names two different facts."""
    found = []
    ids_by_fact: dict[str, set[str]] = defaultdict(set)
    times_by_id: dict[str, set[str]] = defaultdict(set)
    facts_by_id: dict[str, set[str]] = defaultdict(set)
    for event in seen.events:
        event_id = event.get("event_id")
        if not isinstance(event_id, str) or not event_id:
            found.append(f"{event.get('media_id')}: {event.get('type')} without an event_id")
            continue
        if not event.get("occurred_at"):
            found.append(f"{event.get('media_id')}: {event.get('type')} without occurred_at")
        fact = _fact(event)
        ids_by_fact[fact].add(event_id)
        times_by_id[event_id].add(str(event.get("occurred_at")))
        facts_by_id[event_id].add(fact)
    for fact, ids in ids_by_fact.items():
        if len(ids) > 1:
            media = json.loads(fact).get("media_id")
            found.append(f"{media}: one fact sent under {len(ids)} event_ids")
    for event_id, times in times_by_id.items():
        if len(times) > 1:
            found.append(f"event {event_id}: repeats carry different occurred_at {sorted(times)}")
    for event_id, facts in facts_by_id.items():
        if len(facts) > 1:
            found.append(f"event {event_id}: names {len(facts)} different facts")
    return found


def dlq_holds_only_malformed(seen: Observation) -> list[str]:
    """The DLQ holds each malformed body once and, at most once, the killer upload's own
    message (its S3 notification, after every try crashed a worker); nothing else."""
    killer_keys = {u.key for u in seen.uploads if u.killer}
    uploads_by_key = {u.key: u for u in seen.uploads}
    expected = Counter(seen.malformed_bodies)
    found = []
    killer_messages = 0
    for body in seen.dlq_bodies:
        if expected[body] > 0:
            expected[body] -= 1
            continue
        keys = upload_keys(body)
        if keys and keys <= killer_keys:
            killer_messages += 1
            continue
        named = [uploads_by_key[k] for k in sorted(keys) if k in uploads_by_key]
        for upload in named:
            item = seen.items.get(upload.media_id) or {}
            # Claims the item counts against the queue's tries: fewer means tries spent outside
            # a claim (a crash while the message was still to be deleted or sent on).
            found.append(
                f"{upload.media_id} ({upload.sample}, {item.get('status')}; the item counts "
                f"{item.get('attempts', 0)} claims, {item.get('deaths', 0)} died): "
                "its message is in the DLQ"
            )
        if named:
            continue
        found.append(f"unexpected body in the DLQ: {body[:120]!r}")
    if killer_messages > 1:
        found.append(f"the killer upload's message is in the DLQ {killer_messages} times")
    for body, missing in expected.items():
        if missing:
            found.append(f"malformed body never reached the DLQ: {body[:80]!r}")
    return found


def survivors_exit_cleanly(seen: Observation) -> list[str]:
    """Each worker running at the end exits 0 on SIGTERM, within the drain limit."""
    found = []
    for slot, code in sorted(seen.exit_codes.items()):
        if code is None:
            found.append(f"worker {slot} still running after SIGTERM")
        elif code != 0:
            found.append(f"worker {slot} exited {code} on SIGTERM")
    return found


def spool_cleaned(seen: Observation) -> list[str]:
    """What killed workers left in the spool is gone once their slot's worker has stopped."""
    return [f"left in the spool: {path}" for path in seen.spool_leftovers]


CHECKS: dict[str, Callable[[Observation], list[str]]] = {
    "terminal_as_expected": terminal_as_expected,
    "nothing_stuck": nothing_stuck,
    "every_outcome_announced": every_outcome_announced,
    "repeats_share_event_id": repeats_share_event_id,
    "dlq_holds_only_malformed": dlq_holds_only_malformed,
    "survivors_exit_cleanly": survivors_exit_cleanly,
    "spool_cleaned": spool_cleaned,
}


def check_all(seen: Observation) -> dict[str, list[str]]:
    """Every check's violations, by check name (an empty list: the check holds)."""
    return {name: check(seen) for name, check in CHECKS.items()}


def event_repeats(events: list[dict[str, Any]]) -> int:
    """How many events were repeats of a fact already sent."""
    return len(events) - len({_fact(e) for e in events})


def _fact(event: dict[str, Any]) -> str:
    """An event without what may differ between sends of one fact."""
    return json.dumps(
        {k: v for k, v in event.items() if k not in ("event_id", "occurred_at")}, sort_keys=True
    )


def upload_keys(body: str) -> set[str]:
    """The original keys a message announces (none for a malformed body)."""
    try:
        parsed = parse_message(body)
    except MalformedMessage:
        return set()
    return {upload.key for upload in parsed.uploads}
