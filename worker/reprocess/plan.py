"""What a reprocess decides from the item alone: whether a stage is owed, whether a request is
already satisfied, which stages run, and what the item becomes once they have.

Pure functions over the item as read, shared by ``mediamill reprocess`` (which items to send)
and the worker (what a request still asks for). The item's provenance (``stages``) holds one
record per stage: name, version, outcome and, once a reprocess wrote it, ``reprocessed_at``
and ``request_id``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from packaging.version import InvalidVersion, Version

from mediamill_core.items import MediaStatus, iso
from mediamill_core.reprocess import Mode, ReprocessRequest
from stages.contract import MediaKind, Stage, StageRecord
from worker.registry import StageRegistry

# A stage whose record says one of these has its results on the item.
DONE_OUTCOMES = frozenset({"ok", "warning"})


def record_of(item: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    for record in item.get("stages") or []:
        if isinstance(record, dict) and record.get("name") == name:
            return record
    return None


def is_done(record: Mapping[str, Any] | None) -> bool:
    return record is not None and record.get("outcome") in DONE_OUTCOMES


def is_older(recorded: str, installed: str) -> bool:
    """The recorded version is older than the installed one (PEP 440, as pip compares them);
    one that does not parse is older unless it is the very same string."""
    try:
        return Version(recorded) < Version(installed)
    except InvalidVersion:
        return recorded != installed


def item_kind(item: Mapping[str, Any]) -> MediaKind | None:
    try:
        return MediaKind(str(item.get("kind")))
    except ValueError:
        return None


def not_applicable(item: Mapping[str, Any], stage: Stage) -> str | None:
    """Why the stage cannot run on this item at all (None: it can)."""
    status = item.get("status")
    if status != MediaStatus.READY.value:
        return f"not READY ({status})"
    kind = item_kind(item)
    if kind is None:
        return "no media kind"
    if kind not in stage.kinds:
        return f"not for {kind.value}"
    return None


def owed(item: Mapping[str, Any], stage: Stage, mode: Mode) -> str | None:
    """Why ``mode`` picks this item for the stage (None: it does not)."""
    record = record_of(item, stage.name)
    if mode == "all":
        return "all"
    if mode == "missing":
        if record is None:
            return "missing"
        return None if is_done(record) else str(record.get("outcome"))
    if record is not None and is_older(str(record.get("version")), stage.version):
        return "outdated"
    return None


def satisfied(item: Mapping[str, Any], stage: Stage, request: ReprocessRequest) -> str | None:
    """Why the request asks for nothing more (None: it still does).

    ``missing`` and ``outdated`` are satisfied once the stage is done at the installed version
    (or a newer one, from a newer worker); ``all`` once it was done so by this request or after
    the request was made.
    """
    record = record_of(item, stage.name)
    if not is_done(record):
        return None
    assert record is not None
    version = str(record.get("version"))
    if is_older(version, stage.version):
        return None
    if request.mode != "all":
        return f"done at version {version}"
    if record.get("request_id") == request.request_id:
        return "done by this request"
    done_at = record.get("reprocessed_at") or item.get("processed_at")
    if isinstance(done_at, str) and done_at >= iso(request.requested_at):
        return f"done at version {version} since the request"
    return None


@dataclass(frozen=True, slots=True)
class Plan:
    """The stages a request runs, and what the others it depends on contribute."""

    run: frozenset[str]
    reused: frozenset[str]  # requirements done on the item: their stored results are handed on
    not_for_kind: frozenset[str]
    renditions: frozenset[str]  # stored renditions to download for the stages that run

    def records(self, item: Mapping[str, Any], registry: StageRegistry) -> dict[str, StageRecord]:
        """The stored records of the stages not run again, for the pipeline's checks."""
        kind = item_kind(item)
        found: dict[str, StageRecord] = {}
        for name in self.reused | self.not_for_kind:
            stored = record_of(item, name) or {}
            found[name] = StageRecord(
                name=name,
                version=str(stored.get("version") or registry[name].version),
                outcome=str(stored.get("outcome") or "skipped"),
                seconds=0.0,
                detail=stored.get("detail") or (f"not for {kind.value}" if kind else None),
            )
        return found


def plan(registry: StageRegistry, item: Mapping[str, Any], target: str) -> Plan:
    """Run the target, and each stage it requires that the item lacks; reuse the rest."""
    kind = item_kind(item)
    run, reused, not_for_kind = {target}, set(), set()
    for name in registry.requirements[target]:
        if kind not in registry[name].kinds:
            not_for_kind.add(name)
        elif is_done(record_of(item, name)):
            reused.add(name)
        else:
            run.add(name)
    stored = set((item.get("renditions") or {}).keys())
    wanted: set[str] = set()
    for name in run:
        if registry.ancestors[name] & reused:  # only then does it see stored renditions
            reads = registry[name].reads_renditions
            wanted |= stored if reads is None else stored & reads
    return Plan(frozenset(run), frozenset(reused), frozenset(not_for_kind), frozenset(wanted))


def stored_metadata(item: Mapping[str, Any]) -> dict[str, Any]:
    """What the stages that follow a reused one see as its metadata: the item's, with the
    location that publish keeps apart put back, as the stage that found it returned it."""
    metadata = dict(item.get("metadata") or {})
    if isinstance(item.get("location"), dict):
        metadata["location"] = item["location"]
    return metadata


def merged(
    item: Mapping[str, Any],
    *,
    metadata: Mapping[str, Any],
    renditions: Mapping[str, dict[str, Any]],
    records: Iterable[StageRecord],
    warnings: Iterable[str],
    final_stages: frozenset[str],
    stamp: str,
    request_id: str,
) -> dict[str, Any]:
    """The attributes a reprocess writes: the item's own, with the stages that ran merged in
    (their metadata keys, their renditions, their records and warnings); nothing else moves."""
    new_metadata = dict(item.get("metadata") or {})
    new_metadata.update(metadata)
    location = new_metadata.pop("location", None)
    ran = [record for record in records]
    names = {record.name for record in ran}
    stages = [dict(record) for record in item.get("stages") or [] if isinstance(record, dict)]
    for record in ran:
        entry = {**record.as_dict(), "reprocessed_at": stamp, "request_id": request_id}
        at = next((i for i, old in enumerate(stages) if old.get("name") == record.name), None)
        if at is None:  # a new stage: after the others, before the final one (publish)
            at = next((i for i, old in enumerate(stages) if old.get("name") in final_stages), None)
            stages.insert(len(stages) if at is None else at, entry)
        else:
            stages[at] = entry
    kept = [
        text
        for text in item.get("warnings") or []
        if not any(str(text).startswith(f"{name}: ") for name in names)
    ]
    sets: dict[str, Any] = {
        "metadata": new_metadata,
        "renditions": {**(item.get("renditions") or {}), **renditions},
        "stages": stages,
        "warnings": [*kept, *warnings],
    }
    if isinstance(location, dict):
        sets["location"] = location
    return sets
