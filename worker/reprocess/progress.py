"""How far a ``mediamill reprocess`` run has got, on the terminal while it runs.

rich's progress bar when stderr is a terminal and rich is installed (it comes with the
dev-stack extra; the worker image does without it); otherwise a plain line every few seconds,
which reads well in a log too.
"""

from __future__ import annotations

import time
from typing import Any, Protocol, TextIO

_PLAIN_EVERY_SECONDS = 5.0


class ProgressView(Protocol):
    def update(self, *, scanned: int, found: int, sent: int) -> None: ...

    def close(self) -> None: ...


class PlainProgress:
    """One line at most every few seconds, and a last one at the end."""

    def __init__(self, out: TextIO, total: int | None, verb: str) -> None:
        self._out = out
        self._total = total
        self._verb = verb
        self._last = 0.0
        self._line = ""

    def update(self, *, scanned: int, found: int, sent: int) -> None:
        of = f" of about {self._total}" if self._total else ""
        self._line = f"scanned {scanned}{of}, found {found}, {self._verb} {sent}"
        now = time.monotonic()
        if now - self._last >= _PLAIN_EVERY_SECONDS:
            self._last = now
            print(self._line, file=self._out, flush=True)

    def close(self) -> None:
        if self._line:
            print(self._line, file=self._out, flush=True)


class RichProgress:
    """A bar over the table's approximate item count (a spinner for an owner's items)."""

    def __init__(self, out: TextIO, total: int | None, verb: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress: Any = Progress(
            SpinnerColumn(),
            TextColumn("scanned"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=Console(file=out),
            transient=False,
        )
        self._verb = verb
        self._task = self._progress.add_task("reprocess", total=total or None, status="")
        self._progress.start()

    def update(self, *, scanned: int, found: int, sent: int) -> None:
        self._progress.update(
            self._task, completed=scanned, status=f"found {found}, {self._verb} {sent}"
        )

    def close(self) -> None:
        self._progress.stop()


def progress_view(out: TextIO, total: int | None, verb: str) -> ProgressView:
    if out.isatty():
        try:
            return RichProgress(out, total, verb)
        except ImportError:
            pass
    return PlainProgress(out, total, verb)
