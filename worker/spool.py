"""The worker's scratch space: one directory per worker, a budget, and what dead workers left.

Every job spools its original and writes its renditions under the worker's directory. The
budget keeps concurrency times the largest upload from filling the disk: a job reserves what it
may need (from the upload's size) before it spools, and waits while that does not fit. Each
worker holds an flock on a file in its own directory; a directory whose lock can be taken
belongs to a worker that is gone (killed, out of memory) and is removed at start-up.
"""

from __future__ import annotations

import fcntl
import math
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import IO

import anyio
from structlog.typing import FilteringBoundLogger

from stages.contract import TransientError
from worker import metrics

_PREFIX = "mediamill-spool-"
# Only what a worker made is ever removed: the base may be a shared /tmp.
_OURS = re.compile(r"^mediamill-spool-[0-9]+-[0-9a-f]{6}$")
_LOCK = ".lock"
# A job writes its original and renditions (a transcode at most about the original's size
# again), plus a floor for small photos' temporary files.
NEED_FACTOR = 2.0
NEED_FLOOR = 64 * 1024**2


def bytes_needed(upload_size: int) -> int:
    return max(NEED_FLOOR, math.ceil(upload_size * NEED_FACTOR))


class SpoolTooSmall(TransientError):
    """The upload needs more space than this worker can ever give it."""


class Spool:
    """The worker's directory under ``base``, and the space its jobs have reserved."""

    def __init__(self, base: Path, budget_bytes: int, log: FilteringBoundLogger) -> None:
        self.base = base
        self.budget = budget_bytes
        self.capacity = budget_bytes
        self.reserved = 0
        self.root = base / f"{_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        self._log = log
        self._lock: IO[bytes] | None = None
        self._freed = anyio.Event()

    def open(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        removed = remove_abandoned(self.base)
        # Locked before it takes its name, so no other worker's clean-up can see it unlocked.
        making = self.base / f".{self.root.name}"
        making.mkdir()
        self._lock = (making / _LOCK).open("wb")
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        making.rename(self.root)
        free = shutil.disk_usage(self.base).free
        self.capacity = min(self.budget, free)
        metrics.SPOOL_BUDGET.set(self.capacity)
        metrics.SPOOL_RESERVED.set(self.reserved)
        # Read when /metrics is scraped, so they are as fresh as the scrape.
        metrics.SPOOL_USED.set_function(self.used_bytes)
        metrics.SPOOL_DISK_FREE.set_function(self.free_bytes)
        self._log.info(
            "spool_ready",
            root=str(self.root),
            budget_bytes=self.budget,
            free_bytes=free,
            capacity_bytes=self.capacity,
            removed_abandoned=removed,
        )

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def used_bytes(self) -> int:
        return _used(self.root)

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.base).free

    def job_dir(self, media_id: str) -> Path:
        path = self.root / f"{media_id}-{secrets.token_hex(4)}"
        path.mkdir(parents=True)
        return path

    def fits(self, need: int) -> bool:
        """Whether ``need`` more bytes fit now (may walk the spool: not on the event loop)."""
        return self._fits(need, self._disk(need, walk=True))

    def _disk(self, need: int, *, walk: bool = False) -> tuple[int | None, int]:
        """What the spool holds on disk and what the disk has free (a statvfs, and a walk).

        The walk is left out (None) while the free disk holds every reservation in full besides
        ``need``: what is written of them cannot matter then, and a walk per job is not free.
        """
        free = shutil.disk_usage(self.base).free
        if not walk and self.reserved + need <= free:
            return None, free
        return _used(self.root), free

    def _fits(self, need: int, disk: tuple[int | None, int]) -> bool:
        used, free = disk
        if self.reserved + need > self.capacity:
            return False
        # The disk may be shared: what is free now must hold it too, beyond what is reserved
        # (all of it, unwalked).
        unwritten = self.reserved if used is None else max(0, self.reserved - used)
        return need + unwritten <= free

    @asynccontextmanager
    async def reserve(self, upload_size: int, *, wait_seconds: float) -> AsyncIterator[Reservation]:
        """Hold the space an upload needs; wait for it up to ``wait_seconds``, then retry later.

        The reservation may grow while it is held (:meth:`Reservation.grow`: a stage that knows,
        once the media is probed, that it writes more than the upload's share); all of it is
        given back together when the job ends, as its files are removed only then.
        """
        need = bytes_needed(upload_size)
        if need > self.capacity:
            raise SpoolTooSmall(
                f"the upload needs {_gb(need)} of scratch space but this worker has "
                f"{_gb(self.capacity)} (MEDIAMILL_SPOOL_BUDGET_BYTES and the free disk under "
                "MEDIAMILL_SPOOL_DIR bound it)"
            )
        await self._wait_for(need, wait_seconds)
        reservation = Reservation(self, need, wait_seconds)
        try:
            yield reservation
        finally:
            self.reserved -= reservation.bytes
            metrics.SPOOL_RESERVED.set(self.reserved)
            self._freed.set()
            self._freed = anyio.Event()

    async def _wait_for(self, need: int, wait_seconds: float) -> None:
        """Take ``need`` more bytes once they fit; TransientError if not within ``wait_seconds``."""
        fitted = False
        with anyio.move_on_after(wait_seconds):
            while True:
                # The disk is read in a worker thread; the decision is taken back on the event
                # loop against what is reserved by then, so two jobs never both take the last
                # room, and the loop never walks the spool itself.
                disk = await anyio.to_thread.run_sync(self._disk, need)
                if fitted := self._fits(need, disk):
                    break
                if disk[0] is None:  # reservations grew meanwhile: look again, walking
                    disk = await anyio.to_thread.run_sync(partial(self._disk, need, walk=True))
                    if fitted := self._fits(need, disk):
                        break
                with anyio.move_on_after(1.0):
                    await self._freed.wait()
        # Out of time (or given none): one last look, on the loop, before leaving it for later.
        if not fitted and not self._fits(need, self._disk(need, walk=True)):
            raise TransientError(
                f"not enough scratch space now ({_gb(need)} needed, {_gb(self.reserved)} of "
                f"{_gb(self.capacity)} reserved): left for later",
                retry_after=wait_seconds,
            )
        self.reserved += need
        metrics.SPOOL_RESERVED.set(self.reserved)


class Reservation:
    """One job's share of the spool, held until the job ends."""

    def __init__(self, spool: Spool, need: int, wait_seconds: float) -> None:
        self._spool = spool
        self._wait_seconds = wait_seconds
        self.bytes = need

    async def grow(self, extra: int, *, why: str) -> None:
        """Hold ``extra`` more bytes too, waiting for them as the first share was waited for.

        Raises SpoolTooSmall when the job as a whole can never fit this worker, TransientError
        when the room is not free in time (what the job holds stays held: a stage that retries
        asks again). ``why`` names what needs it, for those errors.
        """
        if extra <= 0:
            return
        capacity = self._spool.capacity
        if self.bytes + extra > capacity:
            raise SpoolTooSmall(
                f"{why} needs {_gb(extra)} of scratch space beyond the {_gb(self.bytes)} "
                f"the job holds, but this worker has {_gb(capacity)} in all "
                "(MEDIAMILL_SPOOL_BUDGET_BYTES and the free disk under MEDIAMILL_SPOOL_DIR "
                "bound it)"
            )
        try:
            await self._spool._wait_for(extra, self._wait_seconds)
        except TransientError as exc:
            raise TransientError(f"{why}: {exc}", retry_after=exc.retry_after) from exc
        self.bytes += extra


def remove_abandoned(base: Path) -> int:
    """Remove the directories of workers that are gone; a live worker's lock keeps its own."""
    removed = 0
    for path in base.glob(f"{_PREFIX}*"):
        if not _OURS.fullmatch(path.name) or not path.is_dir():
            continue
        lock_path = path / _LOCK
        try:
            with lock_path.open("rb") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except FileNotFoundError:
            pass  # its worker died before it took the lock
        except BlockingIOError:
            continue  # a live worker's
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


def _used(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_blocks * 512
            except FileNotFoundError:
                continue
    return total


def _gb(size: int) -> str:
    return f"{size / 1000**3:.2f} GB"
