"""The chaos run: real workers on moto behind a fault proxy, killed, fed duplicates and garbage.

    python -m tests.chaos.driver --uploads 150 --workers 3 --fault-rate 0.1 --seed 7

Provisions a stack on moto, starts ``--workers`` ``mediamill worker`` processes whose AWS
endpoint is the fault proxy, pushes the uploads through the API's presigned POST while it
SIGKILLs workers, re-sends real S3 notifications and sends malformed bodies, then waits until
everything has settled (or nothing has changed for ``--quiet`` seconds, or ``--deadline``),
stops the workers with SIGTERM and checks what must hold. Everything stays on loopback and the
run stops by itself. Exit status 0 only when every check holds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "tests" / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

from mediamill_testkit.faultproxy import FaultKind, FaultPlan, FaultProxy  # noqa: E402
from mediamill_testkit.plugin_dist import install_test_stages, pythonpath  # noqa: E402
from tests.chaos.checks import check_all  # noqa: E402
from tests.chaos.corpus import make_corpus  # noqa: E402
from tests.chaos.fleet import Fleet  # noqa: E402
from tests.chaos.run import ChaosConfig, ChaosRun  # noqa: E402
from worker.dev.devstack import (  # noqa: E402
    DEV_CREDENTIALS,
    EmbeddedAws,
    StackNames,
    provision,
    use_dev_credentials,
)


def worker_env(
    config: ChaosConfig, stack_env: dict[str, str], endpoint: str, site: Path, workdir: Path
) -> dict[str, str]:
    """A chaos worker's environment: the stack's settings, AWS through the proxy, fast timings."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "MEDIAMILL_"))
    }
    path = [pythonpath(site), str(ROOT), inherited.get("PYTHONPATH", "")]
    return {
        **inherited,
        **DEV_CREDENTIALS,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(workdir / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "no-aws-credentials"),
        "PYTHONPATH": os.pathsep.join(p for p in path if p),
        **stack_env,
        "MEDIAMILL_ENDPOINT_URL": endpoint,
        "MEDIAMILL_STAGES": "probe,thumbnail,transcode,crash,publish",
        "MEDIAMILL_CONCURRENCY": str(config.concurrency),
        "MEDIAMILL_CPU_THREADS": "1",
        "MEDIAMILL_VISIBILITY_TIMEOUT": str(config.visibility_timeout),
        "MEDIAMILL_RECEIVE_WAIT_SECONDS": "1",
        "MEDIAMILL_RETRY_BASE_SECONDS": "1",
        "MEDIAMILL_RETRY_MAX_SECONDS": "2",
        "MEDIAMILL_DRAIN_SECONDS": "10",
        "MEDIAMILL_METRICS_HOST": "127.0.0.1",
        "MEDIAMILL_METRICS_PORT": "0",
        "MEDIAMILL_LOG_FORMAT": "json",
        # The periodic sweep: owed events and crash-looping items, soon (unknown names are
        # ignored by a worker without the sweep).
        "MEDIAMILL_SWEEP_INTERVAL_SECONDS": "2",
        "MEDIAMILL_EVENT_GRACE_SECONDS": "3",
    }


def run_chaos(config: ChaosConfig, workdir: Path) -> dict[str, Any]:
    """One whole run; returns its report (figures, and each check's violations)."""
    started = time.monotonic()
    rng = random.Random(config.seed)
    use_dev_credentials()
    _log_emulation_to(workdir / "moto.log")
    aws = EmbeddedAws()
    endpoint = aws.start()
    proxy = FaultProxy(endpoint, FaultPlan(rate=config.fault_rate, seed=config.seed))
    fleet: Fleet | None = None
    try:
        stack = provision(
            endpoint,
            StackNames.random("chaos"),
            visibility_timeout=config.visibility_timeout,
            max_receive_count=config.max_receive_count,
        )
        corpus = make_corpus(workdir / "media", config.uploads, rng)
        site = install_test_stages(workdir / "site")
        proxy.start()
        script_named_faults(proxy, config.targeted)
        env = worker_env(config, stack.settings_env(), proxy.endpoint, site, workdir)
        fleet = Fleet(env, workdir, config.workers)
        run = ChaosRun(config, stack, corpus, fleet, rng)
        seen, figures = run.run(started)
        # A worker's last calls (releases on SIGTERM) still meet faults: that is the point.
        seen.exit_codes = fleet.stop(within=30)
        seen.spool_leftovers = sorted(
            str(p.relative_to(workdir)) for s in fleet.slots for p in s.spool.iterdir()
        )
        figures["faults"] = proxy.stats()
        figures["elapsed_seconds"] = round(time.monotonic() - started, 1)
        figures["worker_log_events"] = _log_events(workdir / "logs")
        checks = check_all(seen)
        return {
            "config": asdict(config),
            "figures": figures,
            "checks": checks,
            "passed": not any(checks.values()),
            "workdir": str(workdir),
        }
    finally:
        if fleet is not None:
            fleet.kill_all()
        proxy.stop()
        aws.stop()


def script_named_faults(proxy: FaultProxy, count: int) -> None:
    """The faults the worker is known to meet in production, ``count`` of each, on purpose: the
    random share may miss them in a small run."""
    # The item's READY write applied and its answer lost (a 500, a dropped connection): botocore
    # retries it, and the retry fails the write's own condition.
    for kind in (FaultKind.LOST_ANSWER, FaultKind.DROPPED):
        proxy.script("dynamodb", kind, operation="UpdateItem", match=b'"READY"', count=count)
    # SNS's Throttled (429), which botocore's standard retry mode does not retry.
    proxy.script("sns", FaultKind.THROTTLE, operation="Publish", count=count)


def _log_emulation_to(path: Path) -> None:
    """moto's request errors (its own 500s, which workers retry) go to a file, not the summary."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in ("werkzeug", "moto"):
        emulation = logging.getLogger(name)
        emulation.addHandler(handler)
        emulation.propagate = False


def _log_events(logs: Path) -> dict[str, int]:
    """How often each event name appears in the workers' JSON logs (for reading a failure)."""
    counts: Counter[str] = Counter()
    for path in logs.glob("*.log"):
        for line in path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and "event" in entry:
                counts[str(entry["event"])] += 1
    return dict(sorted(counts.items()))


def summary(report: dict[str, Any]) -> str:
    """The figures and the checks, for a person to read."""
    figures = report["figures"]
    faults = figures["faults"]
    lines = [
        f"chaos run: {'PASSED' if report['passed'] else 'FAILED'} "
        f"({figures['stop_reason']}, {figures['elapsed_seconds']} s)",
        f"  uploads      {figures['uploads']}",
        f"  outcomes     {figures['outcomes']}",
        f"  AWS calls    {faults['calls']}",
        f"  faults       {faults['total_faults']}: {faults['faults']}",
        f"  kills        {figures['kills']} by the run, {figures['crashes']} crashes "
        f"(exit codes {figures['crash_exit_codes']}), {figures['restarts']} restarts",
        f"  sent         {figures['duplicates']} duplicate deliveries, "
        f"{figures['malformed']} malformed bodies",
        f"  events       {figures['events']} ({figures['repeats']} repeats)",
        f"  DLQ          {figures['dlq_messages']} messages",
        f"  waited       {figures['waited_seconds']} s after the last upload",
    ]
    for name, violations in report["checks"].items():
        mark = "ok  " if not violations else "FAIL"
        lines.append(f"  [{mark}] {name}" + (f": {len(violations)}" if violations else ""))
        lines.extend(f"           - {v}" for v in violations[:12])
        if len(violations) > 12:
            lines.append(f"           ... and {len(violations) - 12} more")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    defaults = ChaosConfig()
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos.driver",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--uploads", type=int, default=defaults.uploads)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=defaults.fault_rate,
        help="share of AWS calls faulted (0..1)",
    )
    parser.add_argument(
        "--kills",
        type=int,
        default=defaults.kills,
        help="SIGKILLs of a random worker while uploads flow",
    )
    parser.add_argument("--duplicates", type=int, default=defaults.duplicates)
    parser.add_argument("--malformed", type=int, default=defaults.malformed)
    parser.add_argument(
        "--targeted",
        type=int,
        default=defaults.targeted,
        help="lost answers of READY writes and SNS throttles, each, on top of the random share",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--deadline",
        type=float,
        default=defaults.deadline,
        help="seconds for the whole run, at most",
    )
    parser.add_argument(
        "--quiet",
        type=float,
        default=defaults.quiet,
        help="stop waiting once nothing has changed for this long",
    )
    parser.add_argument("--workdir", type=Path, help="where media, logs and spools go")
    parser.add_argument("--report", type=Path, help="also write the report here as JSON")
    args = parser.parse_args(argv)
    config = ChaosConfig(
        uploads=args.uploads,
        workers=args.workers,
        fault_rate=args.fault_rate,
        kills=args.kills,
        duplicates=args.duplicates,
        malformed=args.malformed,
        targeted=args.targeted,
        seed=args.seed,
        deadline=args.deadline,
        quiet=args.quiet,
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mediamill-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    report = run_chaos(config, workdir)
    print(summary(report))
    print(f"  worker logs  {workdir / 'logs'}")
    if args.report:
        args.report.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
