"""`mediamill dev` in a process of its own, as a person runs it, and its interruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def dev_process(*args: str) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    """The running command and the ready line it printed first; killed at the end if need be."""
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "dev", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        yield process, json.loads(process.stdout.readline())
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def interrupt(process: subprocess.Popen[str]) -> int:
    """Ctrl-C, as a terminal sends it; the exit status."""
    process.send_signal(signal.SIGINT)
    return process.wait(timeout=60)
