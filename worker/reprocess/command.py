"""``mediamill reprocess``: find the items a stage owes and send one backfill request for each.

The run reads the installed stage from the registry (the stage must load here, as in the
worker), reads the table page by page, sends requests in batches at ``--rate``, and keeps a
checkpoint so that the same command run again after an interruption goes on where it stopped:
nothing sent twice, nothing missed. Running it twice is harmless anyway: the worker acknowledges
a request the item already satisfies. A first SIGINT stops after the batch being sent, with the
checkpoint saved; a kill may leave that one batch to be sent again.
"""

from __future__ import annotations

import signal
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import anyio
from botocore.exceptions import BotoCoreError, ClientError

from mediamill_core.items import iso, utc_now
from mediamill_core.reprocess import Mode, ReprocessRequest, new_request
from mediamill_core.settings import Settings
from stages.contract import MediaKind, Stage
from worker.aws import open_clients
from worker.registry import StageRegistry
from worker.reprocess.checkpoint import Checkpoint, Segment, default_path
from worker.reprocess.finder import ItemPages, Selection
from worker.reprocess.progress import ProgressView, progress_view
from worker.reprocess.sender import RequestSender, SendFailed

DEFAULT_RATE = 100.0
DEFAULT_SEGMENTS = 4
FAILED = 1
INTERRUPTED = 130


class ReprocessError(Exception):
    """The run cannot start as asked; the message says why (the CLI exits 2)."""


@dataclass(frozen=True, slots=True)
class ReprocessOptions:
    stage: str
    mode: Mode = "missing"
    kind: MediaKind | None = None
    owner: str | None = None
    since: datetime | None = None
    dry_run: bool = False
    rate: float = DEFAULT_RATE
    segments: int = DEFAULT_SEGMENTS
    checkpoint: Path | None = None
    queue_url: str | None = None


def installed_stage(registry: StageRegistry, name: str) -> Stage:
    if name not in registry.loaded:
        raise ReprocessError(
            f"stage {name!r} is not installed or not enabled here (loaded: "
            f"{', '.join(stage.name for stage in registry.order)}); install its distribution "
            "or add it to MEDIAMILL_STAGES, as on the workers"
        )
    stage = registry[name]
    if stage.final:
        raise ReprocessError(f"stage {name!r} is final: it runs with an upload, never alone")
    return stage


class ReprocessRun:
    """One run of the command over the media table."""

    def __init__(
        self,
        settings: Settings,
        registry: StageRegistry,
        options: ReprocessOptions,
        *,
        out: TextIO,
        err: TextIO,
        stop: anyio.Event | None = None,
    ) -> None:
        self.stage = installed_stage(registry, options.stage)
        self.options = options
        self.settings = settings
        self.queue_url = options.queue_url or settings.backfill_queue_url
        if not self.queue_url and not options.dry_run:
            raise ReprocessError(
                "no backfill queue: set MEDIAMILL_BACKFILL_QUEUE_URL or give --queue-url"
            )
        self.selection = Selection(
            stage=self.stage,
            mode=options.mode,
            kind=options.kind,
            owner=options.owner,
            since=iso(options.since) if options.since else None,
        )
        self.segments = 1 if options.owner else options.segments
        self.arguments: dict[str, Any] = {
            "table": settings.table,
            "queue_url": self.queue_url,
            "stage": self.stage.name,
            "version": self.stage.version,
            "mode": options.mode,
            "kind": options.kind.value if options.kind else None,
            "owner": options.owner,
            "since": self.selection.since,
            "segments": self.segments,
        }
        self.path = options.checkpoint or default_path(self.stage.name, self.arguments)
        self._out = out
        self._err = err
        self.stop = stop or anyio.Event()
        self._live: Counter[str] = Counter()  # counts of pages under way, for the progress
        self._view: ProgressView | None = None
        self._failure: Exception | None = None

    async def run(self) -> int:
        """0 when every item was handled; INTERRUPTED when stopped and FAILED when AWS failed
        it, the checkpoint kept either way."""
        dry = self.options.dry_run
        checkpoint = None if dry else Checkpoint.load(self.path, self.arguments)
        if checkpoint is not None:
            print(
                f"resuming run {checkpoint.run_id} (requested {checkpoint.requested_at}): "
                f"{checkpoint.sent} sent so far; checkpoint {self.path}",
                file=self._err,
            )
        else:
            checkpoint = Checkpoint(
                run_id=uuid.uuid4().hex,
                requested_at=iso(utc_now()),
                arguments=self.arguments,
                segments=[Segment() for _ in range(self.segments)],
            )
        async with open_clients(self.settings) as aws:
            pages = ItemPages(
                aws.dynamodb, self.settings.table, self.selection, len(checkpoint.segments)
            )
            sender = RequestSender(aws.sqs, str(self.queue_url), self.options.rate)
            total = await pages.approximate_count()
            self._view = progress_view(self._err, total, "listed" if dry else "sent")
            try:
                async with anyio.create_task_group() as group:
                    group.start_soon(self._watch_signals, group.cancel_scope)
                    async with anyio.create_task_group() as segments:
                        for index, segment in enumerate(checkpoint.segments):
                            if not segment.done:
                                segments.start_soon(
                                    self._guarded, pages, sender, checkpoint, index, segment
                                )
                    group.cancel_scope.cancel()
            finally:
                self._view.close()
        finished = all(segment.done for segment in checkpoint.segments)
        self._summary(checkpoint, finished)
        if dry:
            return 0
        if finished:
            self.path.unlink(missing_ok=True)
            return 0
        if self._failure is not None:
            print(
                f"mediamill reprocess: {self._failure}; what was sent is in {self.path}: "
                "run the same command again to go on",
                file=self._err,
            )
            return FAILED
        print(f"interrupted: run the same command again to go on ({self.path})", file=self._err)
        return INTERRUPTED

    async def _watch_signals(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                if self.stop.is_set():
                    scope.cancel()  # a second signal: stop now
                    return
                print("stopping after the batch being sent…", file=self._err)
                self.stop.set()

    async def _guarded(
        self,
        pages: ItemPages,
        sender: RequestSender,
        checkpoint: Checkpoint,
        index: int,
        segment: Segment,
    ) -> None:
        """One segment; an AWS failure stops every segment after its batch, checkpoint kept."""
        try:
            await self._segment(pages, sender, checkpoint, index, segment)
        except (SendFailed, ClientError, BotoCoreError) as exc:
            if self._failure is None:
                self._failure = exc
            self.stop.set()

    async def _segment(
        self,
        pages: ItemPages,
        sender: RequestSender,
        checkpoint: Checkpoint,
        index: int,
        segment: Segment,
    ) -> None:
        dry = self.options.dry_run
        async for items, after in pages.pages(index, segment.start):
            sent_before = set(segment.sent)
            skipped: Counter[str] = Counter()
            picked: list[tuple[dict[str, Any], str]] = []
            for item in items:
                chosen, why = self.selection.reason(item)
                if chosen:
                    picked.append((item, why))
                else:
                    skipped[why] += 1
            self._live.update({"scanned": len(items), "found": len(picked)})
            to_send = [(item, why) for item, why in picked if item["media_id"] not in sent_before]
            for batch in _chunks(to_send, sender.batch):
                if self.stop.is_set():
                    return
                if dry:
                    for item, why in batch:
                        print(_listing(item, why), file=self._out)
                    self._live["listed"] += len(batch)
                else:
                    await sender.send([self._request(checkpoint, item) for item, _ in batch])
                    segment.sent.extend(item["media_id"] for item, _ in batch)
                    checkpoint.sent += len(batch)
                    checkpoint.save(self.path)
                self._show(checkpoint)
            # The page is done: its counts are kept, and the run goes on after it.
            self._live.subtract({"scanned": len(items), "found": len(picked)})
            checkpoint.scanned += len(items)
            checkpoint.found += len(picked)
            checkpoint.skipped.update(skipped)
            segment.start, segment.sent, segment.done = after, [], after is None
            if not dry:
                checkpoint.save(self.path)
            self._show(checkpoint)
            if self.stop.is_set():
                return

    def _request(self, checkpoint: Checkpoint, item: dict[str, Any]) -> ReprocessRequest:
        return new_request(
            media_id=str(item["media_id"]),
            stage=self.stage.name,
            mode=self.options.mode,
            requested_at=datetime.fromisoformat(checkpoint.requested_at),
            request_id=checkpoint.run_id,
        )

    def _show(self, checkpoint: Checkpoint) -> None:
        if self._view is not None:
            sent = self._live["listed"] if self.options.dry_run else checkpoint.sent
            self._view.update(
                scanned=checkpoint.scanned + self._live["scanned"],
                found=checkpoint.found + self._live["found"],
                sent=sent,
            )

    def _summary(self, checkpoint: Checkpoint, finished: bool) -> None:
        flag = {"missing": "--missing", "outdated": "--outdated", "all": "--all"}[self.options.mode]
        state = "done" if finished else "stopped"
        sent = (
            f"would send {self._live['listed']}"
            if self.options.dry_run
            else f"sent {checkpoint.sent}"
        )
        skipped = sum(checkpoint.skipped.values())
        print(
            f"reprocess {self.stage.name} {self.stage.version} ({flag}), run "
            f"{checkpoint.run_id}, {state}: scanned {checkpoint.scanned}, found "
            f"{checkpoint.found}, {sent}, skipped {skipped}",
            file=self._out,
        )
        for reason, count in sorted(checkpoint.skipped.items(), key=lambda e: (-e[1], e[0])):
            print(f"  skipped {count}: {reason}", file=self._out)


def _listing(item: dict[str, Any], why: str) -> str:
    return "\t".join([str(item["media_id"]), str(item.get("kind")), str(item.get("owner")), why])


def _chunks(
    entries: Sequence[tuple[dict[str, Any], str]], size: int
) -> Iterator[Sequence[tuple[dict[str, Any], str]]]:
    for start in range(0, len(entries), size):
        yield entries[start : start + size]
