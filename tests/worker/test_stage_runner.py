"""A timed-out or cancelled CPU stage is signalled and waited for; one that ignores it is stuck."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import anyio
import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from mediamill_core.settings import SettingsError, load_settings
from mediamill_testkit.pipeline import make_pipeline, outcomes, run_job
from stages import Job, Stage, StageResult
from worker.pipeline import StageTimeout

TESTS = Path(__file__).resolve().parents[1]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Final(Stage):
    name = "final"
    version = "1.0.0"
    final = True
    timeout = 1.0

    async def run(self, job: Job) -> StageResult:
        return StageResult()


class Stubborn(Stage):
    """Ignores job.cancelled: returns only when the test lets it (or after 10 s)."""

    name = "stubborn"
    version = "1.0.0"
    cpu_bound = True
    timeout = 0.1
    release: ClassVar[threading.Event] = threading.Event()
    starts: ClassVar[list[str]] = []

    def run_sync(self, job: Job) -> StageResult:
        Stubborn.starts.append(job.media_id)
        Stubborn.release.wait(10)
        return StageResult()


class OptionalStubborn(Stubborn):
    name = "optional-stubborn"
    optional = True


class Quick(Stage):
    """A CPU stage that returns at once: it needs a free CPU slot, nothing more."""

    name = "quick"
    version = "1.0.0"
    cpu_bound = True
    timeout = 5.0

    def run_sync(self, job: Job) -> StageResult:
        return StageResult(metadata={"quick": True})


class Obedient(Stage):
    """Checks for cancellation while it works, and records when it stopped."""

    name = "obedient"
    version = "1.0.0"
    cpu_bound = True
    stopped: ClassVar[threading.Event] = threading.Event()

    def run_sync(self, job: Job) -> StageResult:
        while True:
            if job.cancelled.is_set():
                time.sleep(0.2)  # closing its output takes a moment
                Obedient.stopped.set()
                job.check_cancelled()
            time.sleep(0.01)


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    Stubborn.release = threading.Event()
    Stubborn.starts = []
    Obedient.stopped = threading.Event()
    yield
    Stubborn.release.set()  # never leave a thread behind for the next test


async def test_a_thread_that_ignores_cancellation_is_stuck_holds_its_slot_and_is_reported(
    tmp_path: Path,
) -> None:
    cores = anyio.CapacityLimiter(1)
    pipeline = make_pipeline(Stubborn, Final, grace=0.3, cpu_limiter=cores)
    stuck_before = metric("mediamill_stuck_stage_threads_total", stage="stubborn")

    started = time.monotonic()
    with capture_logs() as logs:
        outcome = await run_job(pipeline, tmp_path / "a", media_id="m-a")
    elapsed = time.monotonic() - started

    # The job waited the grace (0.3 s after the 0.1 s timeout), not the thread's 10 s.
    assert 0.35 <= elapsed < 3
    assert isinstance(outcome.error, StageTimeout)
    assert not outcome.error.stopped
    assert "did not stop" in str(outcome.error)
    assert outcomes(outcome)["stubborn"] == "failed"
    assert any(e["event"] == "stage_thread_stuck" for e in logs)
    assert metric("mediamill_stuck_stage_threads_total", stage="stubborn") == stuck_before + 1
    assert metric("mediamill_stage_threads_stuck") >= 1
    [problem] = pipeline.health_problems()
    assert "'stubborn' of m-a ignored cancellation" in problem
    [stuck] = pipeline.runner.stuck
    assert (stuck.stage, stuck.media_id) == ("stubborn", "m-a")

    # Its CPU slot stays taken: the next job's CPU stage cannot start beside it.
    assert cores.borrowed_tokens == 1
    after = make_pipeline(Quick, Final, cpu_limiter=cores)
    async with anyio.create_task_group() as group:
        results = []

        async def second_job() -> None:
            results.append(await run_job(after, tmp_path / "b", media_id="m-b"))

        group.start_soon(second_job)
        await anyio.sleep(0.3)
        assert results == []  # waiting for the slot
        Stubborn.release.set()
    assert results[0].error is None
    assert results[0].metadata == {"quick": True}

    # Returned at last: the slot is free and the worker healthy again.
    assert cores.borrowed_tokens == 0
    assert pipeline.health_problems() == []
    assert Stubborn.starts == ["m-a"]


class Waiting(Quick):
    name = "waiting"
    timeout = 0.2


async def test_a_timeout_while_waiting_for_a_cpu_slot_is_a_plain_timeout(tmp_path: Path) -> None:
    cores = anyio.CapacityLimiter(1)
    await cores.acquire_on_behalf_of("another job's thread")
    pipeline = make_pipeline(Waiting, Final, cpu_limiter=cores)

    outcome = await run_job(pipeline, tmp_path)

    assert isinstance(outcome.error, StageTimeout)
    assert outcome.error.stopped  # no thread was ever started: nothing is stuck
    assert "timed out after 0.2 s" in str(outcome.error)
    assert pipeline.health_problems() == []
    assert cores.borrowed_tokens == 1


class DecodesInAHelperThread(Stage):
    """An async stage waiting on a thread of its own, as tagging decodes keyframes."""

    name = "helper-thread"
    version = "1.0.0"
    timeout = 0.2

    async def run(self, job: Job) -> StageResult:
        def decode() -> StageResult:
            for _ in range(500):  # 5 s, unless told to stop
                job.check_cancelled()
                time.sleep(0.01)
            return StageResult()

        return await anyio.to_thread.run_sync(decode)


async def test_an_async_stage_is_signalled_the_moment_it_times_out(tmp_path: Path) -> None:
    started = time.monotonic()
    outcome = await run_job(make_pipeline(DecodesInAHelperThread, Final), tmp_path, within=10)

    assert isinstance(outcome.error, StageTimeout)
    assert "timed out after 0.2 s" in str(outcome.error)
    # Not when the helper thread would have ended by itself: it saw job.cancelled at once.
    assert time.monotonic() - started < 2


async def test_a_cancelled_job_waits_for_its_thread_to_stop(tmp_path: Path) -> None:
    pipeline = make_pipeline(Obedient, Final, grace=5.0)

    with anyio.move_on_after(0.3) as shutdown:  # as the drain limit cancels a job
        await run_job(pipeline, tmp_path)

    assert shutdown.cancelled_caught
    # Cancellation reached the caller only after the thread had seen it and returned.
    assert Obedient.stopped.is_set()
    assert pipeline.runner.limiter.borrowed_tokens == 0
    assert pipeline.health_problems() == []


async def test_an_optional_stage_that_is_stuck_is_deferred_never_started_again(
    tmp_path: Path,
) -> None:
    pipeline = make_pipeline(
        OptionalStubborn,
        Final,
        grace=0.2,
        options={"optional-stubborn": {"retry": {"attempts": 5, "seconds": 30}}},
    )

    outcome = await run_job(pipeline, tmp_path)

    assert outcome.error is None
    assert outcomes(outcome) == {"optional-stubborn": "deferred", "final": "ok"}
    assert Stubborn.starts == ["m-1"]  # a retry would have run beside the stuck thread
    assert len(pipeline.health_problems()) == 1


def test_a_stuck_thread_does_not_keep_the_process_from_exiting(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        import anyio
        sys.path[:0] = [{str(TESTS / "support")!r}, {str(Path(__file__).parent)!r}]
        from mediamill_testkit.pipeline import make_pipeline, run_job
        from test_stage_runner import Final, Stubborn

        async def main() -> None:
            pipeline = make_pipeline(Stubborn, Final, grace=0.1)
            outcome = await run_job(pipeline, Path({str(tmp_path)!r}))
            print(type(outcome.error).__name__, len(pipeline.runner.stuck), flush=True)

        anyio.run(main)
        """
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].split() == ["StageTimeout", "1"]
    assert time.monotonic() - started < 8  # not the stuck thread's 10 s


def test_the_drain_limit_and_the_grace_together_stay_under_ecs_stop_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Jobs still running at the drain limit are cancelled, and their threads get the grace,
    # all before ECS's SIGKILL: otherwise their messages would stay hidden until they expire.
    monkeypatch.setenv("MEDIAMILL_DRAIN_SECONDS", "100")
    monkeypatch.setenv("MEDIAMILL_STAGE_GRACE_SECONDS", "25")
    with pytest.raises(SettingsError, match=r"DRAIN_SECONDS \+ MEDIAMILL_STAGE_GRACE_SECONDS"):
        load_settings()
    monkeypatch.setenv("MEDIAMILL_STAGE_GRACE_SECONDS", "15")
    assert load_settings().stage_grace_seconds == 15
