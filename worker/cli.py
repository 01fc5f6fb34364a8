"""The ``mediamill`` command: worker, stages, health, dlq, inspect, dev and demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError

# The worker's own modules (settings, registry, logging) are imported by the commands that use
# them: `mediamill health` runs as the container health check, on a busy task, and must answer
# long before ECS's 5 s timeout.


def _worker(args: argparse.Namespace) -> int:
    from mediamill_core.settings import load_settings
    from worker.consumer import Worker
    from worker.logs import configure_logging
    from worker.registry import StageRegistry
    from worker.task_protection import AGENT_URI_VARIABLE

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    registry = StageRegistry.from_settings(settings.stages, settings.stage_options)
    worker = Worker(
        settings,
        registry,
        burst=True if args.burst else None,
        # ECS sets it in every container of a task; the worker then asks for scale-in protection.
        ecs_agent_uri=os.environ.get(AGENT_URI_VARIABLE),
    )
    anyio.run(lambda: worker.run(handle_signals=True))
    return 0


def _stages(args: argparse.Namespace) -> int:
    from mediamill_core.settings import load_settings
    from worker.registry import StageRegistry

    settings = load_settings()
    registry = StageRegistry.from_settings(settings.stages, settings.stage_options)
    rows = registry.describe()
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    from worker.ops.tables import print_table

    columns = ("name", "version", "distribution", "kinds", "requires", "flags", "timeout")
    cells = []
    for row in rows:
        flags = [f for f in ("optional", "final", "cpu_bound") if row[f]]
        cells.append(
            (
                row["name"],
                row["version"],
                f"{row['distribution']} {row['distribution_version']}",
                ",".join(row["kinds"]),
                ",".join(row["requires"]) or "-",
                ",".join(flags) or "-",
                f"{row['timeout']:g}s",
            )
        )
    print_table("mediamill stages (entry-point group mediamill.stages)", columns, cells)
    return 0


def _health(args: argparse.Namespace) -> int:
    from worker.health import check

    url = args.url
    if url is None:  # reading the settings costs a few tenths of a second; --url skips it
        from mediamill_core.settings import load_settings

        url = f"http://127.0.0.1:{load_settings().metrics_port}"
    answer = check(url, timeout=args.timeout)
    print(answer.describe())
    return 0 if answer.healthy else 1


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


def _dev(args: argparse.Namespace) -> int:
    from mediamill_core.settings import load_settings
    from worker.dev.embedded import embedded_stack
    from worker.dev.local_api import dev_token
    from worker.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)

    async def main() -> None:
        import signal

        async with embedded_stack(api_port=args.api_port, run_worker=args.worker) as running:
            ready = running.describe()
            # A token the local API accepts (it passes claims through unverified), to try it now.
            token = dev_token("dev-user")
            ready["example_token"] = token
            ready["example_curl"] = (
                f"curl -s -H 'Authorization: Bearer {token}' {running.api_url}/media"
            )
            sys.stdout.write(json.dumps(ready) + "\n")
            sys.stdout.flush()
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    break

    anyio.run(main)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from worker.dev.demo import run_demo
    from worker.logs import configure_logging

    # The demo's own table is the output; the worker's logs only matter when something breaks.
    configure_logging("ERROR", "console")
    return anyio.run(
        lambda: run_demo(
            [Path(f) for f in args.files],
            Path(args.out),
            as_json=args.json,
            wait_seconds=args.timeout,
            include_broken=args.include_broken,
        )
    )


def parser() -> argparse.ArgumentParser:
    from worker import __version__

    root = argparse.ArgumentParser(
        prog="mediamill",
        description="The mediamill command: worker, stages, health, dlq, inspect, dev and demo.",
    )
    root.add_argument("--version", action="version", version=f"mediamill {__version__}")
    commands = root.add_subparsers(dest="command", required=True)

    worker = commands.add_parser("worker", help="consume the media queue (the ECS service)")
    worker.add_argument("--burst", action="store_true", help="stop once the queue is empty")
    worker.set_defaults(run=_worker)

    stages = commands.add_parser("stages", help="list the stages that load, with versions")
    stages.add_argument("--json", action="store_true", help="one JSON object per stage")
    stages.set_defaults(run=_stages)

    health = commands.add_parser(
        "health", help="exit 0 when the worker's /healthz is fine, else print why and exit 1"
    )
    health.add_argument("--check", action="store_true", help="(default) check and exit 0 or 1")
    health.add_argument(
        "--url", help="status server base URL or its /healthz URL (default: local metrics port)"
    )
    health.add_argument(
        "--timeout", type=float, default=2.0, help="seconds to wait for the answer (default: 2)"
    )
    health.set_defaults(run=_health)

    _dlq_parser(commands)

    inspect = commands.add_parser(
        "inspect", help="one upload: item, stages, S3 objects, and where its message may be"
    )
    inspect.add_argument("media_id", metavar="MEDIA_ID", help="32 hexadecimal digits")
    inspect.add_argument("--json", action="store_true", help="one JSON object")
    inspect.set_defaults(run=_inspect)

    dev = commands.add_parser("dev", help="embedded AWS + API + worker on loopback")
    dev.add_argument("--api-port", type=int, default=0, help="local API port (default: any)")
    dev.add_argument(
        "--no-worker",
        dest="worker",
        action="store_false",
        help="no embedded worker: run one elsewhere with the printed worker_env",
    )
    dev.set_defaults(run=_dev)

    demo = commands.add_parser("demo", help="upload files through the embedded stack and report")
    demo.add_argument(
        "files", nargs="*", help="media files or folders (default: generated samples)"
    )
    demo.add_argument(
        "--include-broken", action="store_true", help="add a broken sample to the generated ones"
    )
    demo.add_argument("--out", default="demo-output", help="where renditions are written")
    demo.add_argument("--json", action="store_true", help="one JSON object per input file")
    demo.add_argument("--timeout", type=float, default=300.0, help="seconds to wait in all")
    demo.set_defaults(run=_demo)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except (ClientError, BotoCoreError) as exc:
        # At start-up (the queue's attributes are read first): wrong URL, region or credentials.
        print(f"mediamill: AWS refused or could not be reached: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # Named here, not in the clause: importing them up front would slow `mediamill health`.
        from mediamill_core.settings import SettingsError
        from worker.ops.lanes import OpsError
        from worker.registry import RegistryError

        if isinstance(exc, OpsError):
            print(f"mediamill: {exc}", file=sys.stderr)
            return 1
        if not isinstance(exc, SettingsError | RegistryError):
            raise
        print(f"mediamill: {exc}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
