"""``mediamill dlq`` and ``mediamill inspect``: their arguments, and the commands' entries."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _dlq(args: argparse.Namespace) -> int:
    from mediamill_core.settings import load_settings
    from worker.ops import dlq, dlq_views
    from worker.ops.lanes import ops_clients

    settings = load_settings()
    clients = ops_clients(settings)
    if args.action == "list":
        found = dlq.read_dead_letters(clients, settings, args.queue, limit=args.limit)
        dlq_views.print_dead_letters(found, as_json=args.json)
    elif args.action == "show":
        letter, items = dlq.find_dead_letter(clients, settings, args.message_id)
        dlq_views.print_letter(letter, items, as_json=args.json)
    elif args.action == "redrive":
        report = dlq.redrive(
            clients,
            settings,
            ids=None if args.all else args.ids,
            to=args.to,
            queue=args.queue,
            dry_run=args.dry_run,
        )
        dlq_views.print_redrive(report, as_json=args.json)
        return 1 if report.failed or report.missing else 0
    else:
        purged = dlq.purge(
            clients,
            settings,
            older_than_seconds=args.older_than,
            queue=args.queue,
            confirm=None if args.yes else dlq_views.ask_to_purge,
        )
        dlq_views.print_purge(purged, as_json=args.json)
        return 1 if purged.failed else 0
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from mediamill_core.settings import load_settings
    from worker.ops.inspect import UnknownMedia, inspect_media, inspection_json, print_inspection
    from worker.ops.lanes import ops_clients
    from worker.registry import RegistryError, StageRegistry
    from worker.stuck import stuck_after_seconds

    settings = load_settings()
    try:
        registry = StageRegistry.from_settings(settings.stages, settings.stage_options)
        stuck_after: float | None = stuck_after_seconds(settings, registry)
    except RegistryError as exc:  # the item can still be read; only the stuck verdict is lost
        print(f"mediamill: stages do not load ({exc}): no verdict on stuck", file=sys.stderr)
        stuck_after = None
    try:
        found = inspect_media(
            ops_clients(settings), settings, args.media_id, stuck_after=stuck_after
        )
    except UnknownMedia as exc:
        if args.json:
            print(json.dumps({"media_id": args.media_id, "found": False, "error": str(exc)}))
        else:
            print(f"mediamill: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"found": True, **inspection_json(found)}, default=str))
    else:
        print_inspection(found)
    return 0


def _age(text: str) -> float:
    from worker.ops.dlq import parse_age

    try:
        return parse_age(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


def _dlq_parser(commands: Any) -> None:
    lanes = ("media", "backfill")
    dlq = commands.add_parser(
        "dlq", help="read, move back and purge the dead-letter queues (media, backfill)"
    )
    actions = dlq.add_subparsers(dest="action", required=True)
    listing = actions.add_parser(
        "list", help="every message in the DLQ(s), with its item; nothing is moved"
    )
    listing.add_argument("--queue", choices=lanes, help="one lane's DLQ (default: every lane's)")
    listing.add_argument(
        "--limit",
        type=_at_least_one,
        default=1000,
        metavar="N",
        help="messages per DLQ at most (1000)",
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per message")
    show = actions.add_parser("show", help="one message in full: body, attributes, item")
    show.add_argument("message_id", metavar="ID", help="the SQS message id, as `dlq list` shows")
    show.add_argument("--json", action="store_true", help="one JSON object")
    redrive = actions.add_parser(
        "redrive", help="move messages back to their queue (or --to another), body and attributes"
    )
    which = redrive.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every message of the DLQ(s)")
    which.add_argument("--id", dest="ids", nargs="+", metavar="ID", help="these messages only")
    redrive.add_argument("--to", choices=lanes, help="destination (default: where each came from)")
    redrive.add_argument("--queue", choices=lanes, help="only this lane's DLQ")
    redrive.add_argument("--dry-run", action="store_true", help="say what would move, move none")
    redrive.add_argument("--json", action="store_true", help="one JSON object")
    purge = actions.add_parser("purge", help="delete the messages older than an age, and no other")
    purge.add_argument(
        "--older-than", required=True, type=_age, metavar="AGE", help="e.g. 7d, 12h, 30m, 1d12h"
    )
    purge.add_argument("--queue", choices=lanes, help="only this lane's DLQ")
    purge.add_argument("--yes", action="store_true", help="do not ask before deleting")
    purge.add_argument("--json", action="store_true", help="one JSON object")
    dlq.set_defaults(run=_dlq)


def add_ops_parsers(commands: Any) -> None:
    _dlq_parser(commands)

    inspect = commands.add_parser(
        "inspect", help="one upload: item, stages, S3 objects, and where its message may be"
    )
    inspect.add_argument("media_id", metavar="MEDIA_ID", help="32 hexadecimal digits")
    inspect.add_argument("--json", action="store_true", help="one JSON object")
    inspect.set_defaults(run=_inspect)
