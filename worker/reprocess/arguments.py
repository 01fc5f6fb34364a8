"""``mediamill reprocess``'s arguments, and the command's entry from the CLI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio


def _reprocess(args: argparse.Namespace) -> int:
    from mediamill_core.settings import load_settings
    from stages.contract import MediaKind
    from worker.registry import StageRegistry
    from worker.reprocess.command import ReprocessOptions, ReprocessRun

    settings = load_settings()
    registry = StageRegistry.from_settings(settings.stages, settings.stage_options)
    options = ReprocessOptions(
        stage=args.stage,
        mode=args.mode,
        kind=MediaKind(args.kind) if args.kind else None,
        owner=args.owner,
        since=args.since,
        dry_run=args.dry_run,
        rate=args.rate,
        segments=args.segments,
        checkpoint=Path(args.checkpoint) if args.checkpoint else None,
        queue_url=args.queue_url,
    )
    run = ReprocessRun(settings, registry, options, out=sys.stdout, err=sys.stderr)
    return anyio.run(run.run)


def _since(value: str) -> datetime:
    """A date (midnight UTC) or an ISO 8601 time (UTC unless it names its offset)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a date like 2025-01-31 or a time like 2025-01-31T12:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
        if number <= 0:
            raise argparse.ArgumentTypeError(f"{value} must be more than 0")
        return number

    return parse


def add_reprocess_parser(commands: Any) -> None:
    reprocess = commands.add_parser(
        "reprocess",
        help="send one backfill request per item that a stage has not run on (or ran older)",
        description="Find the READY items a stage owes and send each a reprocess request on "
        "the backfill queue; the workers run only that stage (and what it needs) on each.",
    )
    reprocess.add_argument("--stage", required=True, help="the installed stage to run again")
    modes = reprocess.add_mutually_exclusive_group()
    modes.add_argument(
        "--missing",
        dest="mode",
        action="store_const",
        const="missing",
        help="(default) items with no record of the stage, or recorded deferred or failed",
    )
    modes.add_argument(
        "--outdated",
        dest="mode",
        action="store_const",
        const="outdated",
        help="items whose record is of an older version than the installed stage's",
    )
    modes.add_argument(
        "--all", dest="mode", action="store_const", const="all", help="every READY item"
    )
    reprocess.set_defaults(mode="missing")
    reprocess.add_argument("--kind", choices=("image", "video"), help="only items of this kind")
    reprocess.add_argument("--owner", help="only this owner's items (read from by-owner)")
    reprocess.add_argument(
        "--since", type=_since, help="only items created at or after this date or time (UTC)"
    )
    reprocess.add_argument(
        "--dry-run", action="store_true", help="list the items it would send, send nothing"
    )
    reprocess.add_argument(
        "--rate",
        type=_positive(float),
        default=100.0,
        help="messages sent per second at most (default: 100)",
    )
    reprocess.add_argument(
        "--segments",
        type=_positive(int),
        default=4,
        help="parallel Scan segments (default: 4; ignored with --owner)",
    )
    reprocess.add_argument(
        "--checkpoint",
        help="where to keep the run's progress (default: ~/.cache/mediamill/reprocess-*.json)",
    )
    reprocess.add_argument(
        "--queue-url", help="the queue to send to (default: MEDIAMILL_BACKFILL_QUEUE_URL)"
    )
    reprocess.set_defaults(run=_reprocess)
