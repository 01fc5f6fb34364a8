"""Each end-of-run check holds on a clean run and names what is wrong in a broken one."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.chaos import checks
from tests.chaos.checks import Observation, Upload
from tests.chaos.run import ChaosRun, malformed_bodies

GOOD = Upload("a" * 32, "originals/" + "a" * 32, "photo.jpg", "READY")
BAD = Upload("b" * 32, "originals/" + "b" * 32, "fake.jpg", "FAILED")
KILLER = Upload("c" * 32, "originals/" + "c" * 32, "killer.png", "FAILED", killer=True)


def notification(key: str) -> str:
    """An S3 notification as SNS delivers it to the media queue."""
    record = {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Post",
        "eventTime": "2026-01-01T00:00:00.000Z",
        "s3": {
            "bucket": {"name": "chaos-originals"},
            "object": {"key": key, "size": 10, "eTag": "abc", "sequencer": "0A"},
        },
    }
    return json.dumps(
        {"Type": "Notification", "MessageId": "m", "Message": json.dumps({"Records": [record]})}
    )


def event(
    upload: Upload, kind: str, event_id: str, at: str = "2026-01-01T00:00:01.000Z"
) -> dict[str, Any]:
    return {
        "type": kind,
        "version": 1,
        "media_id": upload.media_id,
        "event_id": event_id,
        "occurred_at": at,
    }


@pytest.fixture
def clean() -> Observation:
    malformed = malformed_bodies(2)
    return Observation(
        uploads=[GOOD, BAD, KILLER],
        items={
            GOOD.media_id: {"status": "READY", "renditions": {"thumb": {"key": "r/a/thumb"}}},
            BAD.media_id: {"status": "FAILED", "error": "an HTML page, not a photo"},
            KILLER.media_id: {"status": "FAILED", "error": "every try crashed the worker"},
        },
        events=[
            event(GOOD, "media.processed", "e-good"),
            event(BAD, "media.failed", "e-bad"),
            event(KILLER, "media.failed", "e-killer"),
            event(GOOD, "media.processed", "e-good"),  # a repeat, as it must be
        ],
        dlq_bodies=[*malformed, notification(KILLER.key)],
        malformed_bodies=malformed,
        queue_counts=(0, 0),
        exit_codes={0: 0, 1: 0},
    )


def violations(seen: Observation) -> dict[str, list[str]]:
    return {name: found for name, found in checks.check_all(seen).items() if found}


def test_a_clean_run_passes_every_check(clean: Observation) -> None:
    assert violations(clean) == {}
    assert checks.event_repeats(clean.events) == 1


def test_the_killer_may_also_end_without_reaching_the_dlq(clean: Observation) -> None:
    clean.dlq_bodies = clean.dlq_bodies[:-1]
    assert violations(clean) == {}


def broken(clean: Observation, change: Any) -> dict[str, list[str]]:
    seen = copy.deepcopy(clean)
    change(seen)
    return violations(seen)


def test_an_upload_ending_otherwise_than_expected(clean: Observation) -> None:
    def ready_bad(seen: Observation) -> None:
        seen.items[BAD.media_id] = {"status": "READY", "renditions": {"x": {}}}
        seen.events[1] = event(BAD, "media.processed", "e-bad")

    assert broken(clean, ready_bad) == {
        "terminal_as_expected": [f"{BAD.media_id} (fake.jpg): READY, expected FAILED"]
    }


def test_failed_without_a_reason_or_ready_without_renditions(clean: Observation) -> None:
    def hollow(seen: Observation) -> None:
        seen.items[KILLER.media_id]["error"] = " "
        seen.items[GOOD.media_id]["renditions"] = {}

    assert broken(clean, hollow)["terminal_as_expected"] == [
        f"{GOOD.media_id} (photo.jpg): READY without renditions",
        f"{KILLER.media_id} (killer.png): FAILED without a reason",
    ]


def test_a_rendition_missing_from_the_bucket(clean: Observation) -> None:
    def lost(seen: Observation) -> None:
        seen.missing_renditions[GOOD.media_id] = ["r/a/thumb"]

    assert broken(clean, lost)["terminal_as_expected"] == [
        f"{GOOD.media_id} (photo.jpg): rendition r/a/thumb is not in the renditions bucket"
    ]


def test_an_item_stuck_processing_and_a_queue_not_drained(clean: Observation) -> None:
    def stuck(seen: Observation) -> None:
        seen.items[KILLER.media_id] = {"status": "PROCESSING"}
        seen.queue_counts = (0, 1)

    found = broken(clean, stuck)
    assert found["nothing_stuck"] == [
        f"{KILLER.media_id} (killer.png): stuck in PROCESSING",
        "media queue not drained: 0 visible, 1 in flight",
    ]
    assert "terminal_as_expected" in found


def test_an_outcome_never_announced_or_still_owed(clean: Observation) -> None:
    def unannounced(seen: Observation) -> None:
        seen.events = [e for e in seen.events if e["media_id"] != GOOD.media_id]
        seen.items[BAD.media_id]["event_pending"] = True

    assert broken(clean, unannounced) == {
        "every_outcome_announced": [
            f"{GOOD.media_id} (photo.jpg, READY): media.processed never sent (sent: nothing)",
            f"{BAD.media_id} (fake.jpg, FAILED): still owes its event (event_pending)",
        ]
    }


def test_an_outcome_contradicted_by_a_later_event(clean: Observation) -> None:
    def contradicted(seen: Observation) -> None:
        seen.events.append(event(GOOD, "media.failed", "e-late", "2026-01-01T00:00:09.000Z"))

    assert broken(clean, contradicted) == {
        "every_outcome_announced": [
            f"{GOOD.media_id} (photo.jpg, READY): announced as media.failed after its outcome"
        ]
    }


def test_events_without_an_id_or_a_time(clean: Observation) -> None:
    def anonymous(seen: Observation) -> None:
        del seen.events[1]["event_id"]
        del seen.events[2]["occurred_at"]

    assert broken(clean, anonymous) == {
        "repeats_share_event_id": [
            f"{BAD.media_id}: media.failed without an event_id",
            f"{KILLER.media_id}: media.failed without occurred_at",
        ]
    }


def test_a_repeat_under_another_id_or_at_another_time(clean: Observation) -> None:
    def renamed(seen: Observation) -> None:
        seen.events[3]["event_id"] = "e-other"

    def retimed(seen: Observation) -> None:
        seen.events[3]["occurred_at"] = "2026-01-01T00:00:05.000Z"

    assert broken(clean, renamed) == {
        "repeats_share_event_id": [f"{GOOD.media_id}: one fact sent under 2 event_ids"]
    }
    assert broken(clean, retimed) == {
        "repeats_share_event_id": [
            "event e-good: repeats carry different occurred_at "
            "['2026-01-01T00:00:01.000Z', '2026-01-01T00:00:05.000Z']"
        ]
    }


def test_one_event_id_for_two_facts(clean: Observation) -> None:
    def collided(seen: Observation) -> None:
        seen.events[1]["event_id"] = "e-good"

    assert broken(clean, collided) == {
        "repeats_share_event_id": ["event e-good: names 2 different facts"]
    }


def test_the_dlq_holding_an_uploads_message_or_missing_a_malformed_body(
    clean: Observation,
) -> None:
    def misplaced(seen: Observation) -> None:
        seen.dlq_bodies = [seen.dlq_bodies[0], notification(GOOD.key), notification(KILLER.key)]
        seen.items[GOOD.media_id] |= {"attempts": 2, "deaths": 1}

    assert broken(clean, misplaced) == {
        "dlq_holds_only_malformed": [
            f"{GOOD.media_id} (photo.jpg, READY; the item counts 2 claims, 1 died): "
            "its message is in the DLQ",
            f"malformed body never reached the DLQ: {clean.malformed_bodies[1][:80]!r}",
        ]
    }


def test_the_dlq_holding_strangers_or_the_killer_twice(clean: Observation) -> None:
    def crowded(seen: Observation) -> None:
        seen.dlq_bodies += ["who sent this?", notification(KILLER.key)]

    assert broken(clean, crowded) == {
        "dlq_holds_only_malformed": [
            "unexpected body in the DLQ: 'who sent this?'",
            "the killer upload's message is in the DLQ 2 times",
        ]
    }


def test_a_survivor_failing_its_sigterm_and_a_dirty_spool(clean: Observation) -> None:
    def untidy(seen: Observation) -> None:
        seen.exit_codes = {0: 0, 1: 1, 2: None}
        seen.spool_leftovers = ["spool/slot-0/mediamill-123-abcdef"]

    assert broken(clean, untidy) == {
        "survivors_exit_cleanly": [
            "worker 1 exited 1 on SIGTERM",
            "worker 2 still running after SIGTERM",
        ],
        "spool_cleaned": ["left in the spool: spool/slot-0/mediamill-123-abcdef"],
    }


def test_a_killers_next_try_is_a_change_for_the_quiet_stop(clean: Observation) -> None:
    """PROCESSING throughout and a message in flight: only its claims and deaths move."""
    clean.items[KILLER.media_id] = {"status": "PROCESSING", "attempts": 2, "deaths": 1}
    tried_again = copy.deepcopy(clean)
    tried_again.items[KILLER.media_id] |= {"attempts": 3, "deaths": 2}
    assert ChaosRun._fingerprint(tried_again) != ChaosRun._fingerprint(clean)
    assert ChaosRun._fingerprint(copy.deepcopy(clean)) == ChaosRun._fingerprint(clean)
