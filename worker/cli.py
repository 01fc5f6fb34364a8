"""The ``mediamill`` command: worker, stages, health, reprocess, dlq, inspect, dev and demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from botocore.exceptions import BotoCoreError, ClientError

from worker.ops.arguments import add_ops_parsers
from worker.reprocess.arguments import add_reprocess_parser

if TYPE_CHECKING:
    pass

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


def _dev(args: argparse.Namespace) -> int:
    from mediamill_core.settings import load_settings
    from worker.dev.embedded import embedded_stack
    from worker.dev.local_api import dev_token
    from worker.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)

    async def main() -> None:
        import signal

        async with embedded_stack(
            api_port=args.api_port, run_worker=args.worker, emulator=args.emulator
        ) as running:
            ready = running.describe()
            # A token the local API accepts (it passes claims through unverified), to try it now.
            token = dev_token("dev-user")
            ready["example_token"] = token
            ready["example_curl"] = (
                f"curl -s -H 'Authorization: Bearer {token}' {running.api_url}/media"
            )
            # Listening before the line goes out: whoever reads it may stop us at once.
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                sys.stdout.write(json.dumps(ready) + "\n")
                sys.stdout.flush()
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
            emulator=args.emulator,
        )
    )


def parser() -> argparse.ArgumentParser:
    from worker import __version__

    root = argparse.ArgumentParser(
        prog="mediamill",
        description=(
            "The mediamill command: worker, stages, health, reprocess, dlq, inspect, dev and demo."
        ),
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

    add_reprocess_parser(commands)

    add_ops_parsers(commands)

    dev = commands.add_parser("dev", help="embedded AWS + API + worker on loopback")
    dev.add_argument("--api-port", type=int, default=0, help="local API port (default: any)")
    dev.add_argument(
        "--no-worker",
        dest="worker",
        action="store_false",
        help="no embedded worker: run one elsewhere with the printed worker_env",
    )
    _add_emulator_option(dev)
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
    _add_emulator_option(demo)
    demo.set_defaults(run=_demo)
    return root


# worker.dev.emulator.EMULATOR_MODES (a test keeps them equal): the production commands build
# this parser too, and import nothing of the dev tooling.
_EMULATOR_MODES = ("process", "inprocess")


def _add_emulator_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--emulator",
        choices=_EMULATOR_MODES,
        default="process",
        help="run moto in a process of its own (default), or on threads of this one",
    )


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
        from worker.health import StatusServerError
        from worker.ops.lanes import OpsError
        from worker.registry import RegistryError
        from worker.reprocess.checkpoint import CheckpointError
        from worker.reprocess.command import ReprocessError

        if isinstance(exc, OpsError):
            print(f"mediamill: {exc}", file=sys.stderr)
            return 1
        if not isinstance(
            exc,
            SettingsError | RegistryError | ReprocessError | CheckpointError | StatusServerError,
        ):
            raise
        print(f"mediamill: {exc}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
