"""What the stages of one job have produced so far, and what the job's run comes to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stages.contract import MediaKind, Rendition, Stage, StageRecord, StageResult


@dataclass(slots=True)
class JobState:
    """What the stages of one job have produced so far."""

    kind: MediaKind | None = None
    results: dict[str, StageResult] = field(default_factory=dict)
    records: dict[str, StageRecord] = field(default_factory=dict)
    # Stages skipped because they are not for this kind: what requires them runs all the same.
    not_for_kind: set[str] = field(default_factory=set)
    # What optional stages that ended without a result gave through unfinished_metadata.
    unfinished: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    # What an earlier job stored for stages this one does not run again (a reprocess): handed
    # to the stages that depend on them, never part of this job's outcome.
    stored: dict[str, StageResult] = field(default_factory=dict)

    def has_result(self, name: str) -> bool:
        return name in self.results or name in self.stored

    def _result(self, name: str) -> StageResult | None:
        return self.results.get(name) or self.stored.get(name)

    def renditions(self, names: frozenset[str], order: tuple[Stage, ...]) -> dict[str, Rendition]:
        merged: dict[str, Rendition] = {}
        for stage in order:
            result = self._result(stage.name) if stage.name in names else None
            if result is not None:
                for rendition in result.renditions:
                    merged[rendition.name] = rendition
        return merged

    def metadata(self, names: frozenset[str], order: tuple[Stage, ...]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for stage in order:
            if stage.name not in names:
                continue
            result = self._result(stage.name)
            if result is not None:
                merged.update(result.metadata)
            elif stage.name in self.unfinished:
                merged.update(self.unfinished[stage.name])
        return merged

    def warnings(self, names: frozenset[str] | None = None) -> list[str]:
        found: list[str] = []
        for name, result in self.results.items():
            if names is None or name in names:
                found.extend(f"{name}: {text}" for text in result.warnings)
        for name, record in self.records.items():
            noted = record.outcome in ("warning", "deferred") and record.detail
            if noted and (names is None or name in names):
                found.append(f"{name}: {record.detail}")
        return found

    def ordered_records(self, order: tuple[Stage, ...]) -> list[StageRecord]:
        return [self.records[s.name] for s in order if s.name in self.records]


@dataclass(slots=True)
class JobOutcome:
    """What the stages did; ``error`` is what failed the job (None when every stage succeeded)."""

    kind: MediaKind | None
    metadata: dict[str, Any]
    renditions: dict[str, Rendition]
    records: list[StageRecord]
    warnings: list[str]
    error: BaseException | None = None
