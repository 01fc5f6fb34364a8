"""An optional stage retries within its own budget, then is deferred: never a full re-run."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from prometheus_client import REGISTRY

from mediamill_testkit.pipeline import make_pipeline, outcomes, run_job
from stages import (
    BadMediaError,
    Job,
    RetryBudget,
    Stage,
    StageOptions,
    StageResult,
    TransientError,
)
from worker.registry import LoadedStage, RegistryError, StageRegistry, instantiate


class Seen:
    tries: ClassVar[list[str]] = []
    final_jobs: ClassVar[list[Job]] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    Seen.tries = []
    Seen.final_jobs = []


class Required(Stage):
    """Stands in for the expensive required work (a transcode)."""

    name = "required"
    version = "1.0.0"

    async def run(self, job: Job) -> StageResult:
        Seen.tries.append(self.name)
        return StageResult(metadata={"made": True})


class Final(Stage):
    name = "final"
    version = "1.0.0"
    final = True

    async def run(self, job: Job) -> StageResult:
        Seen.final_jobs.append(job)
        return StageResult()


class FlakyOptions(StageOptions):
    failures: int = 1_000
    retry_after: float | None = 0.01


class Flaky(Stage):
    """Optional, throttled for its first ``failures`` tries; says what it stood for when not."""

    name = "flaky"
    version = "1.0.0"
    optional = True
    requires = ("required",)
    Options = FlakyOptions

    async def run(self, job: Job) -> StageResult:
        options = self.options
        assert isinstance(options, FlakyOptions)
        Seen.tries.append(self.name)
        (job.workdir / f"partial-{len(Seen.tries)}").write_text("x")
        if Seen.tries.count(self.name) <= options.failures:
            raise TransientError("throttled", retry_after=options.retry_after)
        return StageResult(metadata={"checked": "yes"})

    def unfinished_metadata(self, outcome: str, reason: str) -> Mapping[str, Any]:
        return {"checked": {"status": outcome, "reason": reason}}


def tries(name: str) -> int:
    return Seen.tries.count(name)


async def test_a_transient_failure_is_retried_in_process_and_the_job_goes_on(
    tmp_path: Path,
) -> None:
    pipeline = make_pipeline(Required, Flaky, Final, options={"flaky": {"failures": 2}})
    retries = REGISTRY.get_sample_value(
        "mediamill_optional_stage_retries_total", {"stage": "flaky"}
    )

    outcome = await run_job(pipeline, tmp_path, attempt=1, max_attempts=5)

    assert outcome.error is None
    assert outcomes(outcome) == {"required": "ok", "flaky": "ok", "final": "ok"}
    assert (tries("required"), tries("flaky"), len(Seen.final_jobs)) == (1, 3, 1)
    assert outcome.metadata == {"made": True, "checked": "yes"}
    after = REGISTRY.get_sample_value("mediamill_optional_stage_retries_total", {"stage": "flaky"})
    assert after == (retries or 0) + 2
    # Each try started from an empty directory: only the last one's file is left.
    assert sorted(p.name for p in (tmp_path / "work" / "flaky").iterdir()) == ["partial-4"]


async def test_when_the_budget_runs_out_the_stage_is_deferred_with_its_metadata(
    tmp_path: Path,
) -> None:
    pipeline = make_pipeline(
        Required, Flaky, Final, options={"flaky": {"retry": {"attempts": 4, "seconds": 30}}}
    )

    # The first delivery of the message: nothing is left for a redelivery to do.
    outcome = await run_job(pipeline, tmp_path, attempt=1, max_attempts=5)

    assert outcome.error is None
    assert outcomes(outcome) == {"required": "ok", "flaky": "deferred", "final": "ok"}
    assert (tries("required"), tries("flaky")) == (1, 4)
    [record] = [r for r in outcome.records if r.name == "flaky"]
    assert record.detail is not None
    assert record.detail.startswith("deferred after 4 tries in ")
    assert record.detail.endswith(": throttled")
    assert outcome.warnings == [f"flaky: {record.detail}"]
    # The hook's metadata reaches the final stage (publish) and the outcome.
    checked = {"status": "deferred", "reason": record.detail}
    [final] = Seen.final_jobs
    assert final.metadata["checked"] == checked
    assert [r.outcome for r in final.records if r.name == "flaky"] == ["deferred"]
    assert outcome.metadata == {"made": True, "checked": checked}


async def test_retry_after_is_honoured_and_a_wait_past_the_budget_is_not_made(
    tmp_path: Path,
) -> None:
    honoured = make_pipeline(
        Required,
        Flaky,
        Final,
        options={"flaky": {"failures": 1, "retry_after": 0.4, "retry": {"seconds": 5}}},
    )
    started = time.monotonic()
    outcome = await run_job(honoured, tmp_path / "honoured")
    assert outcome.error is None
    assert outcomes(outcome)["flaky"] == "ok"
    assert time.monotonic() - started >= 0.4

    Seen.tries = []
    hopeless = make_pipeline(
        Required,
        Flaky,
        Final,
        options={"flaky": {"retry_after": 60, "retry": {"attempts": 10, "seconds": 5}}},
    )
    started = time.monotonic()
    outcome = await run_job(hopeless, tmp_path / "hopeless")
    assert time.monotonic() - started < 2  # deferred at once, not after a minute's sleep
    assert outcomes(outcome)["flaky"] == "deferred"
    assert tries("flaky") == 1


class Sparing(Flaky):
    """Declares a smaller budget of its own."""

    name = "sparing"
    retry_budget = RetryBudget(attempts=2, seconds=10.0)


def test_the_budget_comes_from_the_class_with_the_options_over_it() -> None:
    assert Flaky(FlakyOptions()).budget == RetryBudget()
    assert Sparing(FlakyOptions()).budget == RetryBudget(attempts=2, seconds=10.0)
    sparing = instantiate(Sparing, {"retry": {"attempts": 5}}, "test")
    assert sparing.budget == RetryBudget(attempts=5, seconds=10.0)
    assert instantiate(Sparing, {"retry": {"seconds": 0}}, "test").budget.seconds == 0


async def test_a_class_budget_is_used(tmp_path: Path) -> None:
    outcome = await run_job(make_pipeline(Required, Sparing, Final), tmp_path)
    assert outcomes(outcome)["sparing"] == "deferred"
    assert tries("sparing") == 2


def test_retry_options_are_refused_on_a_required_stage() -> None:
    with pytest.raises(RegistryError, match="retry: only an optional stage"):
        instantiate(Required, {"retry": {"attempts": 2}}, "test")
    with pytest.raises(RegistryError, match="attempts"):
        instantiate(Flaky, {"retry": {"attempts": 0}}, "test")


def test_the_budget_counts_in_the_longest_a_job_may_take() -> None:
    stages = [
        instantiate(cls, options, cls.name)
        for cls, options in (
            (Required, None),
            (Flaky, {"retry": {"seconds": 50}}),
            (Final, None),
        )
    ]
    registry = StageRegistry([LoadedStage(stage=stage) for stage in stages])
    # required, then flaky's timeout plus its budget, then final.
    assert registry.critical_path_seconds() == 300 + (300 + 50) + 300


class Broken(Flaky):
    name = "broken"

    async def run(self, job: Job) -> StageResult:
        Seen.tries.append(self.name)
        raise KeyError("a bug")


class Unusable(Flaky):
    name = "unusable"

    async def run(self, job: Job) -> StageResult:
        Seen.tries.append(self.name)
        raise BadMediaError("no faces in a landscape")


@pytest.mark.parametrize(
    ("cls", "detail"),
    [(Broken, "KeyError: 'a bug'"), (Unusable, "no faces in a landscape")],
)
async def test_a_failure_that_no_retry_mends_is_a_warning_and_the_hook_says_failed(
    tmp_path: Path, cls: type[Stage], detail: str
) -> None:
    outcome = await run_job(make_pipeline(Required, cls, Final), tmp_path)

    assert outcome.error is None
    assert outcomes(outcome)[cls.name] == "warning"
    assert tries(cls.name) == 1  # not retried: only a TransientError may pass
    assert outcome.metadata["checked"] == {"status": "failed", "reason": detail}
    assert Seen.final_jobs[0].metadata["checked"] == {"status": "failed", "reason": detail}


class AfterFlaky(Flaky):
    """Needs what the flaky stage makes."""

    name = "after-flaky"
    requires = ("flaky",)

    async def run(self, job: Job) -> StageResult:
        raise AssertionError("never run without what it requires")


async def test_a_stage_that_requires_a_deferred_one_is_deferred_with_it(tmp_path: Path) -> None:
    pipeline = make_pipeline(
        Required, Flaky, AfterFlaky, Final, options={"flaky": {"retry": {"attempts": 1}}}
    )

    outcome = await run_job(pipeline, tmp_path)

    states = outcomes(outcome)
    assert states == {
        "required": "ok",
        "flaky": "deferred",
        "after-flaky": "deferred",
        "final": "ok",
    }
    [record] = [r for r in outcome.records if r.name == "after-flaky"]
    assert record.detail == "requires flaky"


class PlainOptional(Stage):
    """An optional stage without a hook: nothing is merged for it."""

    name = "plain"
    version = "1.0.0"
    optional = True
    retry_budget = RetryBudget(attempts=1)

    async def run(self, job: Job) -> StageResult:
        raise TransientError("busy")


async def test_without_a_hook_a_deferred_stage_adds_no_metadata(tmp_path: Path) -> None:
    outcome = await run_job(make_pipeline(Required, PlainOptional, Final), tmp_path)
    assert outcomes(outcome)["plain"] == "deferred"
    assert outcome.metadata == {"made": True}
