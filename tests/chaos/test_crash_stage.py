"""The crash stage kills its own process on the marked original, and only on that one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from mediamill_testkit.plugin_dist import SUPPORT
from tests.chaos.corpus import killer_sample
from worker.dev import samples

RUN_STAGE = """
import sys
from pathlib import Path
from mediamill_testkit.stages import CrashOptions, CrashStage
from stages import Job

original, workdir = Path(sys.argv[1]), Path(sys.argv[2])
CrashStage(CrashOptions()).run_sync(Job.standalone(original, workdir))
print("survived")
"""


def run_stage(original: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SUPPORT), str(root)])}
    return subprocess.run(
        [sys.executable, "-c", RUN_STAGE, str(original), str(workdir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_marked_original_kills_the_process(tmp_path: Path) -> None:
    killer = killer_sample(tmp_path)
    done = run_stage(killer.path, tmp_path)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert "survived" not in done.stdout


def test_any_other_original_passes(tmp_path: Path) -> None:
    photo = samples.write_png(tmp_path / "plain.png", 96, 64)
    done = run_stage(photo, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "survived"
