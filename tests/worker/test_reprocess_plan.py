"""The reprocess request on the wire, and the decisions made from an item alone."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mediamill_core.reprocess import InvalidRequest, new_request, parse_request
from mediamill_testkit.pipeline import make_pipeline, run_job
from stages import Job, MediaKind, Rendition, Stage, StageRecord, StageResult
from worker.registry import LoadedStage, StageRegistry, instantiate
from worker.reprocess.plan import is_older, merged, owed, plan, satisfied
from worker.reprocess.progress import PlainProgress, RichProgress, progress_view

MEDIA_ID = "a" * 32
WHEN = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


def test_a_request_survives_the_wire_and_other_bodies_are_not_requests() -> None:
    request = new_request(MEDIA_ID, "tagging", "outdated", WHEN, "run-7")
    assert parse_request(request.body()) == request
    assert json.loads(request.body())["requested_at"] == "2025-05-01T12:00:00Z"
    assert parse_request('{"Records": []}') is None  # an upload event: not ours
    assert parse_request("not json") is None
    assert parse_request('{"type": "media.processed"}') is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"version": 2}, "version 2 is not one this worker reads (it reads version 1)"),
        ({"version": None}, "version (none)"),
        ({"media_id": "../etc"}, "media_id: String should match pattern"),
        ({"requested_at": "2025-05-01T12:00:00"}, "requested_at: Input should have timezone"),
        ({"stage": 7}, "stage: Input should be a valid string"),
    ],
)
def test_a_request_that_does_not_validate_is_refused_with_its_reason(
    change: dict[str, Any], reason: str
) -> None:
    body = json.loads(new_request(MEDIA_ID, "tagging", "all", WHEN, "run-7").body())
    with pytest.raises(InvalidRequest, match="reprocess request") as refused:
        parse_request(json.dumps({**body, **change}))
    assert reason in str(refused.value)


def test_versions_compare_as_pip_compares_them() -> None:
    assert is_older("1.9.0", "1.10.0")  # as text it would be newer
    assert not is_older("2.0.0", "1.10.0")
    assert not is_older("1.0", "1.0.0")
    assert is_older("build-7", "1.0.0")
    assert not is_older("build-7", "build-7")


class _Stage(Stage):
    version = "2.0.0"

    async def run(self, job: Job) -> StageResult:
        return StageResult()


def stage(name: str, **attributes: Any) -> type[Stage]:
    return type(name.title(), (_Stage,), {"name": name, **attributes})


class Publish(_Stage):
    name = "publish"
    final = True


def registry(*classes: type[Stage]) -> StageRegistry:
    return StageRegistry([LoadedStage(instantiate(c, None, c.name)) for c in (*classes, Publish)])


def item(*records: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "media_id": MEDIA_ID,
        "status": "READY",
        "kind": "image",
        "processed_at": "2025-04-01T00:00:00.000Z",
        "stages": list(records),
        "renditions": {"preview": {"key": "k/p.jpg"}, "thumb": {"key": "k/t.webp"}},
        **fields,
    }


def done(name: str, version: str = "2.0.0", **extra: Any) -> dict[str, Any]:
    return {"name": name, "version": version, "outcome": "ok", "seconds": 0.1, **extra}


def test_what_each_mode_owes_and_when_a_request_is_satisfied() -> None:
    target = stage("tags")(stage("tags").Options())
    assert owed(item(), target, "missing") == "missing"
    assert owed(item({**done("tags"), "outcome": "deferred"}), target, "missing") == "deferred"
    assert owed(item(done("tags", "1.0.0")), target, "missing") is None
    assert owed(item(done("tags", "1.0.0")), target, "outdated") == "outdated"
    assert owed(item(done("tags")), target, "outdated") is None

    missing = new_request(MEDIA_ID, "tags", "missing", WHEN, "run-1")
    assert satisfied(item(done("tags")), target, missing) == "done at version 2.0.0"
    assert satisfied(item(done("tags", "1.0.0")), target, missing) is None
    every = new_request(MEDIA_ID, "tags", "all", WHEN, "run-1")
    assert satisfied(item(done("tags")), target, every) is None  # processed before the request
    later = done("tags", reprocessed_at="2025-05-02T00:00:00.000Z")
    assert satisfied(item(later), target, every) == "done at version 2.0.0 since the request"
    assert satisfied(item(done("tags", request_id="run-1")), target, every) == (
        "done by this request"
    )


def test_the_plan_runs_what_the_item_lacks_and_fetches_only_what_is_read() -> None:
    probe = stage("probe")
    thumb = stage("thumbnail", requires=("probe",), kinds=frozenset({MediaKind.IMAGE}))
    clip = stage("transcode", requires=("probe",), kinds=frozenset({MediaKind.VIDEO}))
    tags = stage(
        "tags",
        requires=("probe", "thumbnail", "transcode"),
        reads_renditions=frozenset({"preview"}),
    )
    greedy = stage("greedy", requires=("tags",))
    alone = stage("alone")
    stages = registry(probe, thumb, clip, tags, greedy, alone)
    stored = item(done("probe"), done("thumbnail"), {**done("tags"), "outcome": "deferred"})

    steps = plan(stages, stored, "greedy")
    assert steps.run == {"greedy", "tags"}  # the deferred requirement runs again
    assert steps.reused == {"probe", "thumbnail"}
    assert steps.not_for_kind == {"transcode"}
    assert steps.renditions == {"preview", "thumb"}  # greedy reads every rendition
    assert plan(stages, stored, "tags").renditions == {"preview"}
    assert plan(stages, stored, "alone").renditions == frozenset()  # it depends on nothing


def test_the_merge_touches_only_what_the_stages_that_ran_made() -> None:
    before = item(
        done("probe"),
        {**done("tags"), "outcome": "warning", "detail": "slow"},
        done("publish"),
        metadata={"width": 10, "tags": ["old"]},
        warnings=["probe: odd header", "tags: slow"],
        location={"latitude": 1.0},
    )
    ran = [
        StageRecord("tags", "2.0.0", "ok", 0.5),
        StageRecord("digest", "1.0.0", "ok", 0.2),
    ]
    sets = merged(
        before,
        metadata={"tags": ["new"], "location": {"latitude": 2.0}, "digest": "x"},
        renditions={"mono": {"key": "k/m.jpg"}},
        records=ran,
        warnings=["digest: partial"],
        final_stages=frozenset({"publish"}),
        stamp="2025-05-02T00:00:00.000Z",
        request_id="run-1",
    )
    assert sets["metadata"] == {"width": 10, "tags": ["new"], "digest": "x"}
    assert sets["location"] == {"latitude": 2.0}
    assert set(sets["renditions"]) == {"preview", "thumb", "mono"}
    assert [r["name"] for r in sets["stages"]] == ["probe", "tags", "digest", "publish"]
    assert sets["stages"][1] == {
        **ran[0].as_dict(),
        "reprocessed_at": "2025-05-02T00:00:00.000Z",
        "request_id": "run-1",
    }
    assert sets["warnings"] == ["probe: odd header", "digest: partial"]


class _Declared(_Stage):
    name = "declared"
    reads_renditions: ClassVar[frozenset[str] | None] = frozenset({"preview"})


def test_reads_renditions_is_refused_unless_a_frozenset_of_names() -> None:
    from worker.registry import RegistryError, _check_class

    assert _check_class(_Declared, "x") is _Declared
    bad = type("Bad", (_Stage,), {"name": "bad", "reads_renditions": ["preview"]})
    with pytest.raises(RegistryError, match="reads_renditions must be None or a frozenset"):
        _check_class(bad, "x")


class _Makes(_Stage):
    name = "makes"

    async def run(self, job: Job) -> StageResult:
        paths = [job.workdir / f"{n}.txt" for n in ("preview", "video")]
        for path in paths:
            path.write_text(path.stem)
        return StageResult(renditions=[Rendition(p.stem, p, "text/plain") for p in paths])


class _Reads(_Stage):
    name = "reads"
    requires = ("makes",)
    reads_renditions: ClassVar[frozenset[str] | None] = frozenset({"preview"})

    async def run(self, job: Job) -> StageResult:
        return StageResult(metadata={"handed": sorted(job.renditions)})


class _Final(_Stage):
    name = "final"
    final = True

    async def run(self, job: Job) -> StageResult:
        return StageResult(metadata={"final_handed": sorted(job.renditions)})


async def test_an_upload_job_hands_a_stage_only_the_renditions_it_declares(
    tmp_path: Path,
) -> None:
    outcome = await run_job(make_pipeline(_Makes, _Reads, _Final), tmp_path)
    assert outcome.error is None
    assert outcome.metadata["handed"] == ["preview"]
    assert outcome.metadata["final_handed"] == ["preview", "video"]  # None: every one


def test_the_progress_bar_says_how_far_the_run_has_got() -> None:
    out = io.StringIO()
    bar = RichProgress(out, 10, "sent")
    bar.update(scanned=5, found=3, sent=2)
    bar.close()
    assert "5/10 found 3, sent 2" in out.getvalue()
    # Not a terminal: plain lines, whatever is installed.
    assert isinstance(progress_view(io.StringIO(), None, "sent"), PlainProgress)
