"""The chaos run's workers: real ``mediamill worker`` processes, killed and restarted.

Each slot is one task's place in the service: when its process dies (a SIGKILL from the run,
or the killer upload crashing it), the slot starts a new one with the same environment and
spool directory, as ECS restarts a task's container on the same host.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


@dataclass(slots=True)
class Slot:
    index: int
    env: dict[str, str]
    spool: Path
    logs: Path
    process: subprocess.Popen[bytes] | None = None
    generation: int = 0
    killed_by_us: bool = False
    exits: list[int] = field(default_factory=list)
    _log_file: IO[bytes] | None = None

    def start(self) -> None:
        self.generation += 1
        self.killed_by_us = False
        if self._log_file is not None:
            self._log_file.close()
        self._log_file = (self.logs / f"worker-{self.index}.{self.generation}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker", "worker"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


@dataclass(frozen=True, slots=True)
class Exit:
    """A worker process that ended while the run went on."""

    slot: int
    generation: int
    code: int
    killed_by_us: bool


class Fleet:
    """``size`` slots, each running one worker process at a time."""

    def __init__(self, env: dict[str, str], workdir: Path, size: int) -> None:
        self.slots: list[Slot] = []
        logs = workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for index in range(size):
            spool = workdir / "spool" / f"slot-{index}"
            spool.mkdir(parents=True, exist_ok=True)
            slot_env = {**env, "MEDIAMILL_SPOOL_DIR": str(spool)}
            self.slots.append(Slot(index, slot_env, spool, logs))
        self.exits: list[Exit] = []

    def start(self) -> None:
        for slot in self.slots:
            slot.start()

    def kill(self, index: int) -> bool:
        """SIGKILL the slot's process (False when it is not running just now)."""
        slot = self.slots[index]
        if slot.process is None or slot.process.poll() is not None:
            return False
        slot.killed_by_us = True
        slot.process.send_signal(signal.SIGKILL)
        slot.process.wait(timeout=10)
        return True

    def restart_dead(self) -> list[Exit]:
        """Start a new process in each slot whose process has ended; say which ended how."""
        ended = []
        for slot in self.slots:
            if slot.process is None or slot.process.poll() is None:
                continue
            code = slot.process.returncode
            ended.append(Exit(slot.index, slot.generation, code, slot.killed_by_us))
            slot.start()
        self.exits.extend(ended)
        return ended

    def stop(self, within: float) -> dict[int, int | None]:
        """SIGTERM every running process; each slot's exit code (None: still running)."""
        running = [s for s in self.slots if s.process is not None and s.process.poll() is None]
        for slot in running:
            assert slot.process is not None
            slot.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + within
        codes: dict[int, int | None] = {}
        for slot in running:
            assert slot.process is not None
            try:
                codes[slot.index] = slot.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                codes[slot.index] = None
        return codes

    def kill_all(self) -> None:
        """Leave nothing running, whatever happened (the run's last step)."""
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.kill()
                slot.process.wait(timeout=10)
            slot.close_log()

    def alive(self) -> list[int]:
        return [s.index for s in self.slots if s.process is not None and s.process.poll() is None]

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of every slot's current log, for a failure message."""
        parts = []
        for slot in self.slots:
            path = slot.logs / f"worker-{slot.index}.{slot.generation}.log"
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts)
