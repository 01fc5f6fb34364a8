"""Tables and the small formats operator output is written in: rich where installed, else text."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

from mediamill_core.items import parse_iso


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    out: TextIO | None = None,
) -> None:
    """A table with a title; rich comes with the dev-stack extra, a production install prints
    aligned plain text."""
    stream = out or sys.stdout
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(c) for c in column) for column in zip(columns, *rows, strict=True)]
        stream.write(title + "\n")
        for line in (columns, *rows):
            stream.write("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
            stream.write("\n")
        return
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for line in rows:
        table.add_row(*line)
    console = Console(file=stream)
    if not console.is_terminal:
        # Piped or captured: lines as long as the cells need, no id folded in two.
        console = Console(file=stream, width=100_000)
    console.print(table)


def moment(value: datetime | str | None) -> str:
    """A UTC time to the second, as the tables show it."""
    if value is None:
        return "-"
    if isinstance(value, str):
        try:
            value = parse_iso(value)
        except ValueError:
            return str(value)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def span(seconds: float) -> str:
    """A duration the way an operator says it: 45 s, 12 min, 3 h 05 min, 2 d 4 h."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def size(count: int | None) -> str:
    """Bytes in the units a person reads (decimal, as S3's console shows them)."""
    if count is None:
        return "-"
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def clip(text: str | None, width: int = 60) -> str:
    if not text:
        return "-"
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
