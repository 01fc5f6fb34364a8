"""The chaos run's loop: a seeded schedule of uploads, kills, duplicates and malformed bodies.

One thread does everything in turn (each action is short), every 0.2 s: due actions, restarts
of dead workers, what the tap and the events queue received. Once the schedule is done it
waits until the stack has settled, nothing has changed for ``quiet`` seconds, or the deadline.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from mediamill_core.keys import original_key
from tests.chaos import checks
from tests.chaos.checks import Observation, Upload
from tests.chaos.corpus import Sample
from tests.chaos.fleet import Fleet
from tests.chaos.stack import (
    Clients,
    UploadClient,
    all_items,
    missing_renditions,
    queue_counts,
    receive_all,
    subscribe_queue,
)
from worker.dev.devstack import Stack
from worker.events import MalformedMessage, parse_message

_TICK = 0.2
_OWNERS = ("alice", "bob", "carol")


@dataclass(frozen=True, slots=True)
class ChaosConfig:
    uploads: int = 30
    workers: int = 2
    fault_rate: float = 0.05
    kills: int = 3
    duplicates: int = 6
    malformed: int = 3
    targeted: int = 1  # of each named fault (see driver.script_named_faults)
    seed: int = 1
    deadline: float = 240.0  # the whole run, set-up included
    quiet: float = 15.0  # nothing has changed for this long: as settled as it will get
    concurrency: int = 4
    visibility_timeout: int = 5
    max_receive_count: int = 5

    @property
    def upload_window(self) -> float:
        """Seconds over which the uploads (and the chaos with them) are spread."""
        return max(10.0, self.uploads * 0.35)


def malformed_bodies(count: int) -> list[str]:
    """Distinct bodies no worker can parse, of the kinds a misconfigured sender produces."""
    shapes = (
        "not json at all {{{ #%d",
        '{"Records": "not a list", "n": %d}',
        '{"Type": "Notification", "MessageId": "m-%d", "Message": "{{not json"}',
        '{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", '
        '"s3": {"bucket": {"name": "b"}, "object": {"size": %d}}}]}',
    )
    bodies = [shapes[i % len(shapes)] % i for i in range(count)]
    for body in bodies:
        try:
            parse_message(body)
        except MalformedMessage:
            continue
        raise AssertionError(f"meant to be malformed, but parses: {body}")
    return bodies


class ChaosRun:
    def __init__(
        self,
        config: ChaosConfig,
        stack: Stack,
        corpus: list[Sample],
        fleet: Fleet,
        rng: random.Random,
    ) -> None:
        self.config = config
        self.stack = stack
        self.corpus = corpus
        self.fleet = fleet
        self.rng = rng
        self.clients = Clients.direct(stack)
        self.events_url = subscribe_queue(
            self.clients, stack, stack.media_topic_arn, "events", raw=True
        )
        # A second subscriber to the uploads topic sees each S3 notification exactly as the
        # media queue does: the bodies to deliver again.
        self.tap_url = subscribe_queue(
            self.clients, stack, stack.uploads_topic_arn, "tap", raw=False
        )
        self.uploader = UploadClient(stack)
        self.uploads: list[Upload] = []
        self.events: list[dict[str, Any]] = []
        self.tapped: list[str] = []
        self.malformed = malformed_bodies(config.malformed)
        self.sent_malformed: list[str] = []
        self.figures: Counter[str] = Counter()

    def schedule(self) -> list[tuple[float, str, int]]:
        window = self.config.upload_window
        steps = len(self.corpus)
        plan = [(window * i / steps, "upload", i) for i in range(steps)]
        plan += [(self.rng.uniform(2.0, window), "kill", i) for i in range(self.config.kills)]
        plan += [
            (self.rng.uniform(window * 0.2, window * 1.1), "duplicate", i)
            for i in range(self.config.duplicates)
        ]
        plan += [
            (self.rng.uniform(1.0, window), "malformed", i) for i in range(self.config.malformed)
        ]
        return sorted(plan)

    def run(self, started: float) -> tuple[Observation, dict[str, Any]]:
        self.fleet.start()
        plan = self.schedule()
        begun = time.monotonic()
        deadline = started + self.config.deadline
        last_change = time.monotonic()
        fingerprint: Any = None
        last_upload_at = begun
        stop_reason = "deadline"
        while time.monotonic() < deadline:
            now = time.monotonic() - begun
            while plan and plan[0][0] <= now:
                _, action, index = plan.pop(0)
                getattr(self, f"_{action}")(index)
                if action == "upload":
                    last_upload_at = time.monotonic()
            self._supervise()
            self._collect()
            if not plan:
                seen = self.observe(cheap=True)
                if self._settled(seen):
                    stop_reason = "settled"
                    break
                current = self._fingerprint(seen)
                if current != fingerprint:
                    fingerprint, last_change = current, time.monotonic()
                elif time.monotonic() - last_change >= self.config.quiet:
                    stop_reason = f"quiet for {self.config.quiet:g} s"
                    break
            time.sleep(_TICK if plan else 1.0)
        waited_seconds = round(time.monotonic() - last_upload_at, 1)
        time.sleep(2.0)  # late repeats of events already sent still count
        self._supervise()
        self._collect()
        seen = self.observe(cheap=False)
        return seen, self._figures(seen, stop_reason, waited_seconds)

    # --- actions -------------------------------------------------------------------------

    def _upload(self, index: int) -> None:
        sample = self.corpus[index]
        media_id = self.uploader.upload(sample, _OWNERS[index % len(_OWNERS)])
        key = original_key(media_id)
        self.uploads.append(Upload(media_id, key, sample.name, sample.expect, sample.killer))

    def _kill(self, index: int) -> None:
        alive = self.fleet.alive()
        if alive and self.fleet.kill(self.rng.choice(alive)):
            self.figures["kills"] += 1

    def _duplicate(self, index: int) -> None:
        """Deliver a real notification again: the newest (likely still running) or any."""
        killer_keys = {u.key for u in self.uploads if u.killer}
        bodies = [b for b in self.tapped if not checks.upload_keys(b) & killer_keys]
        if not bodies:
            return
        body = bodies[-1] if index % 2 == 0 else self.rng.choice(bodies)
        self.clients.sqs.send_message(QueueUrl=self.stack.queue_url, MessageBody=body)
        self.figures["duplicates"] += 1

    def _malformed(self, index: int) -> None:
        body = self.malformed[index]
        self.clients.sqs.send_message(QueueUrl=self.stack.queue_url, MessageBody=body)
        self.sent_malformed.append(body)

    # --- watching ------------------------------------------------------------------------

    def _supervise(self) -> None:
        for ended in self.fleet.restart_dead():
            self.figures["restarts"] += 1
            if not ended.killed_by_us:
                self.figures["crashes"] += 1
                self.figures[f"crash_exit_{ended.code}"] += 1

    def _collect(self) -> None:
        for message in receive_all(self.clients.sqs, self.tap_url):
            self.tapped.append(message["Body"])
        for message in receive_all(self.clients.sqs, self.events_url):
            self.events.append(json.loads(message["Body"]))

    def observe(self, *, cheap: bool) -> Observation:
        items: dict[str, dict[str, Any] | None] = dict(
            all_items(self.clients.dynamodb, self.stack.names.table)
        )
        seen = Observation(
            uploads=list(self.uploads),
            items={u.media_id: items.get(u.media_id) for u in self.uploads},
            events=list(self.events),
            dlq_bodies=[],
            malformed_bodies=list(self.sent_malformed),
            queue_counts=queue_counts(self.clients.sqs, self.stack.queue_url),
        )
        if cheap:
            seen.dlq_bodies = ["?"] * sum(queue_counts(self.clients.sqs, self.stack.dlq_url))
            return seen
        # Kept hidden, not deleted: read once, and left for whoever looks after the run.
        dead = receive_all(self.clients.sqs, self.stack.dlq_url, hide_for=600)
        seen.dlq_bodies = [m["Body"] for m in dead]
        for upload in self.uploads:
            item = seen.items.get(upload.media_id) or {}
            if item.get("status") == "READY":
                missing = missing_renditions(
                    self.clients.s3, self.stack.names.renditions_bucket, item
                )
                if missing:
                    seen.missing_renditions[upload.media_id] = missing
        return seen

    def _settled(self, seen: Observation) -> bool:
        """Everything the checks wait for has happened (whether or not it is right)."""
        if len(seen.dlq_bodies) < len(self.sent_malformed):
            return False
        return not (
            checks.terminal_as_expected(seen)
            or checks.nothing_stuck(seen)
            or checks.every_outcome_announced(seen)
        )

    @staticmethod
    def _fingerprint(seen: Observation) -> Any:
        # A killer's tries change only its claims and deaths (PROCESSING throughout, a message
        # in flight): each takes a visibility timeout, and all of them are progress.
        progress = ("status", "attempts", "deaths")
        items = tuple(
            sorted((k, tuple((v or {}).get(f) for f in progress)) for k, v in seen.items.items())
        )
        return items, len(seen.events), len(seen.dlq_bodies), seen.queue_counts

    def _figures(self, seen: Observation, stop_reason: str, waited: float) -> dict[str, Any]:
        kinds = Counter(
            "killer" if u.killer else ("good" if u.expect == "READY" else "bad")
            for u in self.uploads
        )
        outcomes = Counter(
            str((seen.items.get(u.media_id) or {}).get("status")) for u in self.uploads
        )
        return {
            "uploads": {"total": len(self.uploads), **dict(sorted(kinds.items()))},
            "outcomes": dict(sorted(outcomes.items())),
            "kills": self.figures["kills"],
            "crashes": self.figures["crashes"],
            "crash_exit_codes": {
                k.removeprefix("crash_exit_"): v
                for k, v in self.figures.items()
                if k.startswith("crash_exit_")
            },
            "restarts": self.figures["restarts"],
            "duplicates": self.figures["duplicates"],
            "malformed": len(self.sent_malformed),
            "events": len(seen.events),
            "repeats": checks.event_repeats(seen.events),
            "dlq_messages": len(seen.dlq_bodies),
            "stop_reason": stop_reason,
            "waited_seconds": waited,
        }
