"""A small chaos run inside the suite: every check of the driver holds (``make chaos``: bigger)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL_RUN = {
    "--uploads": "30",
    "--workers": "2",
    "--fault-rate": "0.06",
    "--kills": "3",
    "--duplicates": "6",
    "--malformed": "3",
    "--seed": "1",
    "--deadline": "200",
}

pytestmark = pytest.mark.timeout(300)


def test_a_small_chaos_run_loses_nothing_and_leaves_nothing_stuck(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    arguments = [item for pair in SMALL_RUN.items() for item in pair]
    arguments += ["--workdir", str(tmp_path / "run"), "--report", str(report_path)]
    done = subprocess.run(
        [sys.executable, "-m", "tests.chaos.driver", *arguments],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        },
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert report_path.exists(), done.stdout + done.stderr
    report = json.loads(report_path.read_text())
    figures = report["figures"]

    # The chaos happened: without it, passing would prove nothing.
    assert figures["uploads"]["total"] == 30
    assert figures["kills"] >= 1, done.stdout
    assert figures["crashes"] >= 1, done.stdout  # the killer upload took a worker down
    assert figures["duplicates"] >= 1, done.stdout
    assert figures["malformed"] == 3
    faults = figures["faults"]["faults"]
    injected = {kind for kinds in faults.values() for kind in kinds}
    assert {"lost_answer", "dropped"} & injected, done.stdout  # some answers lost after commit
    assert {"throttle", "server_error"} & injected, done.stdout

    assert report["passed"], done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
