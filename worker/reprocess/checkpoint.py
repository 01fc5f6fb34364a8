"""Where an interrupted ``mediamill reprocess`` run stands, so that running it again goes on.

One JSON file per run's arguments: for each scan segment, the position after the last page
whose every item was handled (DynamoDB's ``LastEvaluatedKey``, as it came) and the ids sent
from the page after it, plus the run's counts. The file is written after each batch sent, to a
temporary name and then renamed over the old one, so a kill leaves the last whole state. A run
that finished removes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = 1


class CheckpointError(Exception):
    """The checkpoint file cannot be read: it is not one this command wrote."""


def default_path(stage: str, arguments: dict[str, Any]) -> Path:
    """``$XDG_CACHE_HOME/mediamill/reprocess-<stage>-<hash of the arguments>.json``."""
    digest = hashlib.sha256(json.dumps(arguments, sort_keys=True).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "mediamill" / f"reprocess-{stage}-{digest}.json"


@dataclass(slots=True)
class Segment:
    """One scan segment (or the owner's query): where to go on from, and what was sent there."""

    start: dict[str, Any] | None = None
    sent: list[str] = field(default_factory=list)
    done: bool = False


@dataclass(slots=True)
class Checkpoint:
    run_id: str
    requested_at: str
    arguments: dict[str, Any]
    segments: list[Segment]
    # Counted when a page is done (so a page read again is not counted twice); ``sent`` as sent.
    scanned: int = 0
    found: int = 0
    sent: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "run_id": self.run_id,
            "requested_at": self.requested_at,
            "arguments": self.arguments,
            "segments": [{"start": s.start, "sent": s.sent, "done": s.done} for s in self.segments],
            "scanned": self.scanned,
            "found": self.found,
            "sent": self.sent,
            "skipped": dict(self.skipped),
        }

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            temporary.write_text(json.dumps(self.as_json()))
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()

    @classmethod
    def load(cls, path: Path, arguments: dict[str, Any]) -> Checkpoint | None:
        """The run recorded at ``path``; None when there is none. A file for other arguments
        (given with --checkpoint) or of another format is refused, not overwritten."""
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {path} cannot be read: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CheckpointError(
                f"checkpoint {path} is not a reprocess checkpoint of this version"
            )
        if data.get("arguments") != arguments:
            raise CheckpointError(
                f"checkpoint {path} is of a run with other arguments "
                f"({json.dumps(data.get('arguments'), sort_keys=True)}): remove it, or give "
                "another --checkpoint"
            )
        try:
            return cls(
                run_id=str(data["run_id"]),
                requested_at=str(data["requested_at"]),
                arguments=arguments,
                segments=[
                    Segment(start=s["start"], sent=list(s["sent"]), done=bool(s["done"]))
                    for s in data["segments"]
                ],
                scanned=int(data["scanned"]),
                found=int(data["found"]),
                sent=int(data["sent"]),
                skipped=Counter({str(k): int(v) for k, v in data["skipped"].items()}),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"checkpoint {path} is damaged: {exc!r}") from None
