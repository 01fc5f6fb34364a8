"""Task scale-in protection against a stand-in ECS agent on loopback: asked for when work
starts, renewed while busy, dropped when idle or stopping, and failures only logged."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
import structlog
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from mediamill_testkit.ecs_agent import EcsAgent, closed_port_uri
from worker.task_protection import TaskProtection, protection_minutes

pytestmark = pytest.mark.anyio

LOG = structlog.get_logger("test")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def agent() -> Iterator[EcsAgent]:
    running = EcsAgent()
    running.start()
    yield running
    running.stop()


def errors(action: str) -> float:
    return (
        REGISTRY.get_sample_value("mediamill_task_protection_errors_total", {"action": action})
        or 0.0
    )


def protected_gauge() -> float | None:
    return REGISTRY.get_sample_value("mediamill_task_protected")


async def until(condition: Callable[[], Any], within: float = 5.0, what: str = "") -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        await anyio.sleep(0.01)
    raise AssertionError(f"not within {within} s: {what}")


@asynccontextmanager
async def running(protection: TaskProtection) -> AsyncIterator[TaskProtection]:
    """Runs it as the worker does, in a task of its own, cancelled when the worker stops."""
    async with anyio.create_task_group() as group:
        group.start_soon(protection.run)
        yield protection
        group.cancel_scope.cancel()


def protection(uri: str | None, **options: Any) -> TaskProtection:
    options.setdefault("minutes", 30)
    options.setdefault("idle_seconds", 0.3)
    options.setdefault("retry_seconds", 0.1)
    return TaskProtection(uri, log=LOG, **options)


async def test_the_first_job_asks_for_protection_for_the_configured_minutes(
    agent: EcsAgent,
) -> None:
    async with running(protection(agent.uri, minutes=200)) as guard:
        await anyio.sleep(0.1)
        assert agent.requests() == [], "nothing asked while idle"
        guard.set_in_flight(1)
        await until(agent.requests, what="a request")
        guard.set_in_flight(2)
        guard.set_in_flight(3)
        await anyio.sleep(0.15)
        assert protected_gauge() == 1.0

    first = agent.requests()[0]
    assert (first.method, first.path) == ("PUT", "/task-protection/v1/state")
    assert first.content_type == "application/json"
    assert first.body == {"ProtectionEnabled": True, "ExpiresInMinutes": 200}
    # More jobs while protected ask for nothing more; stopping lets go.
    assert agent.states() == [True, False]
    assert protected_gauge() == 0.0


async def test_protection_is_renewed_while_busy(agent: EcsAgent) -> None:
    async with running(protection(agent.uri, renew_every_seconds=0.2)) as guard:
        guard.set_in_flight(1)
        await until(lambda: len(agent.requests()) >= 3, what="two renewals")
        renewals = agent.requests()[:3]
    assert [r.body for r in renewals] == [{"ProtectionEnabled": True, "ExpiresInMinutes": 30}] * 3
    gaps = [b.at - a.at for a, b in itertools.pairwise(renewals)]
    assert all(0.15 < gap < 1.0 for gap in gaps), gaps


async def test_idle_for_the_delay_drops_it_and_a_steady_stream_keeps_it(agent: EcsAgent) -> None:
    async with running(protection(agent.uri, idle_seconds=0.4)) as guard:
        guard.set_in_flight(1)
        await until(agent.requests, what="protection")
        # Jobs end and start again within the idle delay: no flapping.
        for _ in range(3):
            guard.set_in_flight(0)
            await anyio.sleep(0.2)
            guard.set_in_flight(1)
        assert agent.states() == [True]
        guard.set_in_flight(0)
        idle_at = time.monotonic()
        await until(lambda: len(agent.requests()) == 2, what="the release")
        released = agent.requests()[1]
        assert released.body == {"ProtectionEnabled": False}
        assert 0.35 < released.at - idle_at < 1.5
        # Work again after the release: protected again.
        guard.set_in_flight(1)
        await until(lambda: len(agent.requests()) == 3, what="protection again")
    assert agent.states() == [True, False, True, False]


async def test_stopping_drops_it_at_once_even_with_jobs_in_flight(agent: EcsAgent) -> None:
    async with running(protection(agent.uri, idle_seconds=60)) as guard:
        guard.set_in_flight(2)
        await until(agent.requests, what="protection")
        guard.stop()
        await until(lambda: len(agent.requests()) == 2, within=1.0, what="the release")
        # The drain goes on; nothing asks for protection again.
        guard.set_in_flight(1)
        guard.set_in_flight(0)
        await anyio.sleep(0.2)
    assert agent.states() == [True, False]


async def test_shutting_down_while_protected_drops_it(agent: EcsAgent) -> None:
    async with running(protection(agent.uri, idle_seconds=60)) as guard:
        guard.set_in_flight(1)
        await until(agent.requests, what="protection")
    assert agent.states() == [True, False]


async def test_without_an_agent_uri_it_does_nothing_at_all(agent: EcsAgent) -> None:
    guard = protection(None)
    with capture_logs() as logs, anyio.fail_after(1):
        # Returns at once: no session, no loop, no calls.
        await guard.run()
        guard.set_in_flight(1)
        guard.stop()
    assert logs == []
    assert agent.requests() == []


@pytest.mark.parametrize("answer", ["error", "failure", "hang", "down"])
async def test_a_failing_agent_is_logged_counted_and_retried(agent: EcsAgent, answer: str) -> None:
    uri = closed_port_uri() if answer == "down" else agent.uri
    agent.answer = "ok" if answer == "down" else answer  # type: ignore[assignment]
    before = errors("protect")
    with capture_logs() as logs:
        async with running(protection(uri, timeout_seconds=0.3)) as guard:
            guard.set_in_flight(1)
            await until(lambda: errors("protect") >= before + 2, what="a failure and a retry")
            if answer != "down":
                agent.answer = "ok"
                await until(lambda: protected_gauge() == 1.0, what="protection once it answers")
    failed = [entry for entry in logs if entry["event"] == "task_protection_failed"]
    assert failed
    assert failed[0]["log_level"] == "warning"
    assert failed[0]["action"] == "protect"
    expected = {
        "error": "HTTP 500: ServerException: ECS did not answer",
        "failure": "ECS refused the change (TASK_NOT_VALID)",
        "hang": "the agent did not answer within 0.3 s",
        "down": "Cannot connect to host 127.0.0.1:",
    }[answer]
    assert failed[0]["error"].startswith(expected), failed[0]["error"]
    if answer != "down":
        assert agent.states()[-2:] == [True, False]


async def test_a_failed_release_is_retried_until_it_succeeds(agent: EcsAgent) -> None:
    before = errors("release")
    async with running(protection(agent.uri, idle_seconds=0.05)) as guard:
        guard.set_in_flight(1)
        await until(agent.requests, what="protection")
        agent.answer = "error"
        guard.set_in_flight(0)
        await until(lambda: errors("release") >= before + 2, what="failed releases")
        assert protected_gauge() == 1.0
        agent.answer = "ok"
        await until(lambda: protected_gauge() == 0.0, what="the release")
        count = len(agent.requests())
    # Released while running: shutting down asks for nothing more.
    assert len(agent.requests()) == count
    assert agent.states()[0] is True
    assert agent.states()[-1] is False


def test_the_default_protection_outlasts_the_longest_chain_of_stage_timeouts() -> None:
    assert protection_minutes(None, 12_000) == 200
    assert protection_minutes(None, 12_001) == 201
    assert protection_minutes(None, 5) == 1
    assert protection_minutes(None, 10 * 24 * 3600) == 2880  # the agent's limit
    assert protection_minutes(45, 12_000) == 45
    with pytest.raises(ValueError, match="1 to 2880"):
        TaskProtection("http://127.0.0.1:1", minutes=2881, idle_seconds=1, log=LOG)
