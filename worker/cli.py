"""The ``mediamill`` command: worker, stages, health, reprocess, dev and demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from collections.abc import Callable

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
    title = "mediamill stages (entry-point group mediamill.stages)"
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
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # rich comes with the dev extra; a production install prints plain text
        widths = [max(len(c) for c in column) for column in zip(columns, *cells, strict=True)]
        print(title)
        for line in (columns, *cells):
            print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        return 0
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for line in cells:
        table.add_row(*line)
    Console().print(table)
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
        description="The mediamill command: worker, stages, health, reprocess, dev and demo.",
    )
    root.add_argument("--version", action="version", version=f"mediamill {__version__}")
    commands = root.add_subparsers(dest="command", required=True)

    worker = commands.add_parser(
        "worker",
        help="consume the media queue, then the backfill with what it leaves (the ECS service)",
    )
    worker.add_argument("--burst", action="store_true", help="stop once the queues are empty")
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
        from worker.registry import RegistryError
        from worker.reprocess.checkpoint import CheckpointError
        from worker.reprocess.command import ReprocessError

        if not isinstance(exc, SettingsError | RegistryError | ReprocessError | CheckpointError):
            raise
        print(f"mediamill: {exc}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
