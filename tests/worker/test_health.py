"""/healthz says what is wrong; `mediamill health` prints it, fast, and exits 0 or 1."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import anyio
import pytest

from mediamill_core.settings import Settings, load_settings
from mediamill_testkit.client import Uploader
from mediamill_testkit.pipeline import make_pipeline, run_job
from stages import Job, Stage, StageResult
from stages.probe.stage import ProbeStage
from worker.aws import open_clients
from worker.cli import main
from worker.consumer import Worker
from worker.dev.devstack import Stack
from worker.dev.samples import write_png
from worker.health import Liveness, check, health_url, start_status_server
from worker.publish import PublishStage
from worker.queue import MediaQueue
from worker.registry import LoadedStage, StageRegistry

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Problems:
    """A watched part of the worker, with whatever problems the test gives it."""

    def __init__(self) -> None:
        self.now: list[str] = []

    def health_problems(self) -> list[str]:
        return list(self.now)


@asynccontextmanager
async def status_server() -> AsyncIterator[tuple[Liveness, Problems, str]]:
    """A status server for a liveness that watches one ``Problems``."""
    liveness = Liveness(stall_seconds=30)
    problems = Problems()
    liveness.watch(problems)
    runner, url = await start_status_server(liveness, "127.0.0.1", 0)
    try:
        yield liveness, problems, url
    finally:
        await runner.cleanup()


async def healthz(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(health_url(url)) as response:
        return response.status, await response.json()


# --- /healthz --------------------------------------------------------------------------------


async def test_healthz_follows_the_loop_ticks() -> None:
    async with status_server() as (liveness, _, url):
        await _follows_the_loop_ticks(liveness, url)


async def _follows_the_loop_ticks(liveness: Liveness, url: str) -> None:
    code, body = await healthz(url)
    assert code == 503
    assert body["reasons"] == ["the worker has not started consuming yet"]

    liveness.tick("running")
    code, body = await healthz(url)
    assert (code, body["status"], body["state"], body["reasons"]) == (200, "ok", "running", [])

    liveness.last_tick = time.monotonic() - 31  # the loop stopped ticking
    code, body = await healthz(url)
    assert (code, body["status"]) == (503, "unhealthy")
    [reason] = body["reasons"]
    assert reason.startswith("the consumer loop has not ticked for 31 s")

    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        assert response.status == 200
        assert "mediamill_jobs_in_flight" in await response.text()


async def test_healthz_lists_what_each_watched_part_reports() -> None:
    async with status_server() as (liveness, problems, url):
        liveness.tick("running")
        problems.now = ["no SQS receive has succeeded for 130 s", "a stage thread is stuck"]

        code, body = await healthz(url)

        assert code == 503
        assert body["reasons"] == problems.now
        problems.now = []
        assert (await healthz(url))[0] == 200


# --- mediamill health ------------------------------------------------------------------------


async def run_cli(*args: str) -> int:
    return await anyio.to_thread.run_sync(main, ["health", *args])


async def test_the_command_takes_the_base_url_or_the_healthz_url(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with status_server() as (liveness, problems, url):
        liveness.tick("running")
        for given in (url, f"{url}/", f"{url}/healthz", f"{url}/healthz/"):
            assert await run_cli("--url", given) == 0, given
            assert capsys.readouterr().out == "healthy\n"

        problems.now = ["no SQS receive has succeeded for 130 s (limit 120 s): AccessDenied"]
        for given in (url, f"{url}/healthz"):
            assert await run_cli("--url", given) == 1
            assert capsys.readouterr().out == f"unhealthy: {problems.now[0]}\n"


async def test_the_command_goes_straight_to_the_worker_whatever_proxy_is_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("HTTP_PROXY", "http_proxy"):  # as a task may set one for its AWS calls
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    async with status_server() as (liveness, _, url):
        liveness.tick("running")
        assert await run_cli("--url", url) == 0
        assert capsys.readouterr().out == "healthy\n"


async def test_the_command_reports_a_dead_port_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    assert await run_cli("--url", f"http://127.0.0.1:{port}") == 1
    assert time.monotonic() - started < 1
    out = capsys.readouterr().out
    assert out.startswith(f"unhealthy: cannot reach http://127.0.0.1:{port}/healthz: ")
    assert "refused" in out.lower()
    assert check("file:///etc/passwd", 1).healthy is False


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers: a worker whose event loop is blocked."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        server.close()


async def test_a_worker_that_does_not_answer_fails_within_the_timeout(
    silent_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    assert await run_cli("--url", silent_server, "--timeout", "0.5") == 1
    assert time.monotonic() - started < 2
    assert capsys.readouterr().out == (
        f"unhealthy: {silent_server}/healthz did not answer within 0.5 s\n"
    )


async def test_the_command_as_a_process_answers_well_under_a_second() -> None:
    async with status_server() as (liveness, _, url):
        liveness.tick("running")
        await _answers_fast(url)


async def _answers_fast(url: str) -> None:
    def health() -> tuple[float, subprocess.CompletedProcess[str]]:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "worker", "health", "--url", url],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return time.monotonic() - started, done

    # Best of three: the machine is shared, the interpreter's start is not ours to measure.
    runs = [await anyio.to_thread.run_sync(health) for _ in range(3)]
    assert all(done.returncode == 0 and done.stdout == "healthy\n" for _, done in runs)
    assert min(seconds for seconds, _ in runs) < 0.6


def test_the_command_loads_none_of_the_workers_heavy_modules() -> None:
    # What keeps it fast on a task whose cores are busy with renditions.
    heavy = ("pydantic", "structlog", "aiohttp", "prometheus_client", "stages")
    script = (
        "import sys\n"
        "from worker.cli import main\n"
        "status = main(['health', '--url', 'http://127.0.0.1:9'])\n"
        f"print(status, [name for name in {heavy!r} if name in sys.modules])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.stdout.splitlines()[-1] == "1 []", done.stdout + done.stderr


# --- what the worker reports -----------------------------------------------------------------


async def test_receives_that_keep_failing_are_reported_from_the_first_failure(
    settings: Settings, stack: Stack, sqs: Any
) -> None:
    quick = settings.model_copy(update={"health_receive_seconds": 0.3})
    stop = anyio.Event()
    stop.set()  # no backoff after a failed receive: the test drives the receives
    async with open_clients(quick) as aws:
        queue = MediaQueue(aws.sqs, quick, structlog_logger())
        await queue.receive(1, stop)  # returned (with S3's test event, or nothing): a success
        await anyio.sleep(0.4)  # all slots busy: no receive at all, and nothing wrong
        assert queue.health_problems() == []

        sqs.delete_queue(QueueUrl=stack.queue_url)
        await queue.receive(1, stop)
        assert queue.health_problems() == []  # failing, but not for long yet
        await anyio.sleep(0.4)
        await queue.receive(1, stop)
        [problem] = queue.health_problems()
        assert problem.startswith("no SQS receive has succeeded for 0 s (limit 0.3 s): ")
        assert "NonExistentQueue" in problem or "QueueDoesNotExist" in problem

        recreate(sqs, stack)
        await queue.receive(1, stop)
        assert queue.health_problems() == []


def structlog_logger() -> Any:
    import structlog

    return structlog.get_logger("test")


def recreate(sqs: Any, stack: Stack) -> None:
    name = stack.queue_url.rsplit("/", 1)[1]
    assert sqs.create_queue(QueueName=name)["QueueUrl"] == stack.queue_url


@asynccontextmanager
async def running_worker(
    registry: StageRegistry, stack_env: dict[str, str], **env: str
) -> AsyncIterator[Worker]:
    """A worker (not in burst mode) running in the background until the block ends."""
    settings = load_settings(**{**settings_fields(stack_env), **settings_fields(env)})
    worker = Worker(settings, registry)
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        with anyio.fail_after(15):
            await worker.started.wait()
        try:
            yield worker
        finally:
            worker.request_stop()


def settings_fields(env: dict[str, str]) -> dict[str, str]:
    return {name.removeprefix("MEDIAMILL_").lower(): value for name, value in env.items()}


async def wait_for_health(url: str, wanted: int, within: float = 20) -> dict[str, Any]:
    with anyio.fail_after(within):
        while True:
            code, body = await healthz(url)
            if code == wanted:
                return body
            await anyio.sleep(0.1)


def plain_registry(*classes: type[Stage]) -> StageRegistry:
    stages = (ProbeStage, *classes, PublishStage)
    return StageRegistry([LoadedStage(stage=cls(cls.Options())) for cls in stages])


async def test_a_worker_that_cannot_receive_from_its_queue_is_unhealthy(
    stack_env: dict[str, str], stack: Stack, sqs: Any
) -> None:
    limit = {"MEDIAMILL_HEALTH_RECEIVE_SECONDS": "1"}
    async with running_worker(plain_registry(), stack_env, **limit) as worker:
        assert worker.status_url is not None
        await wait_for_health(worker.status_url, 200)

        # The queue goes away under it (as after a revoked permission): every receive fails.
        sqs.delete_queue(QueueUrl=stack.queue_url)
        body = await wait_for_health(worker.status_url, 503)
        assert body["state"] == "running"  # the loop itself is fine: it says what is wrong
        [reason] = body["reasons"]
        assert reason.startswith("no SQS receive has succeeded for ")

        recreate(sqs, stack)
        await wait_for_health(worker.status_url, 200)


class IgnoresCancellation(Stage):
    """A CPU stage that never checks job.cancelled: it returns when the test lets it."""

    name = "ignores-cancellation"
    version = "1.0.0"
    requires = ("probe",)
    cpu_bound = True
    timeout = 0.2
    release: ClassVar[threading.Event] = threading.Event()

    def run_sync(self, job: Job) -> StageResult:
        IgnoresCancellation.release.wait(30)
        return StageResult()


async def test_a_stage_thread_that_ignores_cancellation_makes_the_worker_unhealthy(
    stack_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    IgnoresCancellation.release = threading.Event()
    registry = plain_registry(IgnoresCancellation)
    grace = {"MEDIAMILL_STAGE_GRACE_SECONDS": "0.2"}
    async with running_worker(registry, stack_env, **grace) as worker:
        assert worker.status_url is not None
        try:
            media_id = Uploader(settings).upload(write_png(tmp_path / "photo.png", 32, 32))

            body = await wait_for_health(worker.status_url, 503)
            [reason] = body["reasons"]
            stuck = f"stage 'ignores-cancellation' of {media_id} ignored cancellation"
            assert reason.startswith(stuck)
            assert await run_cli("--url", worker.status_url) == 1
        finally:
            IgnoresCancellation.release.set()
        await wait_for_health(worker.status_url, 200)  # it returned: the task may live on


class Shielded(Stage):
    """An async stage that shields itself from cancellation: its job runs past every limit."""

    name = "shielded"
    version = "1.0.0"
    timeout = 0.1
    release: ClassVar[anyio.Event]

    async def run(self, job: Job) -> StageResult:
        with anyio.CancelScope(shield=True):
            await Shielded.release.wait()
        return StageResult()


class QuickFinal(Stage):
    name = "quick-final"
    version = "1.0.0"
    final = True
    timeout = 0.1

    async def run(self, job: Job) -> StageResult:
        return StageResult()


async def test_a_job_past_its_timeouts_and_the_grace_is_reported(tmp_path: Path) -> None:
    Shielded.release = anyio.Event()
    pipeline = make_pipeline(Shielded, QuickFinal, grace=0.1)
    assert pipeline.limit_seconds == pytest.approx(0.1 + 0.1 + 0.1)

    async with anyio.create_task_group() as group:
        group.start_soon(run_job, pipeline, tmp_path)
        try:
            await anyio.sleep(0.1)
            assert pipeline.health_problems() == []  # within its time
            await anyio.sleep(0.4)
            [problem] = pipeline.health_problems()
            assert problem.startswith("job m-1 has run its stages for ")
            assert problem.endswith(" s, past the 0.3 s their timeouts and the grace allow")
        finally:
            Shielded.release.set()
    assert pipeline.health_problems() == []
