"""ECS task scale-in protection: while the worker has jobs in flight, the ECS agent is asked to
keep this task out of scale-in and deployments; when idle for a while, or stopping, it lets go.

ECS sets ``ECS_AGENT_URI`` in every container of a task; without it (not on ECS) none of this
runs. The agent's endpoint (``PUT $ECS_AGENT_URI/task-protection/v1/state``) answers
``{"protection": {...}}`` when ECS took the change, ``{"failure": {...}}`` with HTTP 200 when ECS
refused it for this task, and ``{"error": {...}}`` with a 4xx or 5xx status. A protection lasts a
bounded time, so a worker that can no longer renew or drop it does not hold its task forever.

The calls never stand in a job's way: they run in a task of their own, each bounded by a
timeout; a failure is logged, counted in ``mediamill_task_protection_errors_total`` and tried
again a few seconds later, while the jobs go on.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import aiohttp
import anyio
from structlog.typing import FilteringBoundLogger

from worker import metrics

AGENT_URI_VARIABLE = "ECS_AGENT_URI"
STATE_PATH = "/task-protection/v1/state"
MAX_MINUTES = 2880  # the agent's (and UpdateTaskProtection's) limit: 48 hours


class AgentRefused(Exception):
    """The ECS agent answered, but did not change the task's protection; says why."""


def protection_minutes(configured: int | None, longest_job_seconds: float) -> int:
    """The protection's length: as configured, or long enough for the longest chain of stage
    timeouts, so one successful call covers a whole job even if the agent is gone after it."""
    if configured is not None:
        return configured
    return min(MAX_MINUTES, max(1, math.ceil(longest_job_seconds / 60)))


class TaskProtection:
    """Keeps the task protected while jobs are in flight; the consumer tells it how many."""

    def __init__(
        self,
        agent_uri: str | None,
        *,
        minutes: int,
        idle_seconds: float,
        log: FilteringBoundLogger,
        renew_every_seconds: float | None = None,
        retry_seconds: float = 5.0,
        timeout_seconds: float = 5.0,
    ) -> None:
        if not 1 <= minutes <= MAX_MINUTES:
            raise ValueError(f"protection lasts 1 to {MAX_MINUTES} minutes, not {minutes}")
        self.agent_uri = agent_uri.rstrip("/") if agent_uri else None
        self.minutes = minutes
        self.idle_seconds = idle_seconds
        # Renewed half way through, so a renewal that fails has the other half to be retried.
        self.renew_every_seconds = renew_every_seconds or minutes * 60 / 2
        self.retry_seconds = retry_seconds
        self.timeout_seconds = timeout_seconds
        self.log = log
        self._in_flight = 0
        self._idle_since: float | None = None
        self._stopping = False
        # By our own clock, counted from when the request was sent: no later than ECS's.
        self._expires_at: float | None = None
        self._renew_at = 0.0
        self._retry_at: float | None = None
        self._wake = anyio.Event()

    def set_in_flight(self, count: int) -> None:
        """The consumer's count of jobs in flight, after each change."""
        if count == 0 and self._in_flight > 0:
            self._idle_since = time.monotonic()
        self._in_flight = count
        self._wake.set()

    def stop(self) -> None:
        """The worker is stopping: the task is going away, nothing is left to protect it for."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Until cancelled; on the way out, drops a protection still held."""
        if self.agent_uri is None:
            return
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_seconds))
        try:
            await self._loop(session)
        finally:
            with anyio.CancelScope(shield=True) as scope:
                scope.deadline = anyio.current_time() + self.timeout_seconds
                if self._expires_at is not None:
                    self._stopping = True
                    await self._put(session, enable=False)
            with anyio.CancelScope(shield=True):
                await session.close()

    async def _loop(self, session: aiohttp.ClientSession) -> None:
        while True:
            # A new event before the step: a change while a call is under way is not missed.
            wake = self._wake = anyio.Event()
            await self._step(session)
            with anyio.move_on_after(self._seconds_to_next_step()):
                await wake.wait()

    def _wanted(self, now: float) -> bool:
        if self._stopping:
            return False
        if self._in_flight > 0:
            return True
        # Held a little after the last job, so a steady stream of messages does not flap it.
        return self._idle_since is not None and now - self._idle_since < self.idle_seconds

    async def _step(self, session: aiohttp.ClientSession) -> None:
        now = time.monotonic()
        if self._retry_at is not None and now < self._retry_at:
            return
        wanted = self._wanted(now)
        if wanted and (self._expires_at is None or now >= self._renew_at):
            await self._put(session, enable=True)
        elif not wanted and self._expires_at is not None:
            await self._put(session, enable=False)

    def _seconds_to_next_step(self) -> float | None:
        if self._retry_at is not None:
            return max(0.0, self._retry_at - time.monotonic())
        if self._expires_at is None:
            return None  # nothing held: only a change of the job count matters
        now = time.monotonic()
        if self._wanted(now) and self._in_flight > 0:
            return max(0.0, self._renew_at - now)
        if self._idle_since is not None and not self._stopping:
            return max(0.0, min(self._idle_since + self.idle_seconds, self._renew_at) - now)
        return 0.0

    async def _put(self, session: aiohttp.ClientSession, *, enable: bool) -> None:
        action = "protect" if enable else "release"
        body: dict[str, Any] = {"ProtectionEnabled": enable}
        if enable:
            body["ExpiresInMinutes"] = self.minutes
        sent = time.monotonic()
        try:
            async with session.put(f"{self.agent_uri}{STATE_PATH}", json=body) as response:
                status, text = response.status, await response.text()
            protection = _confirmed(status, text, enable)
        except Exception as exc:  # whatever went wrong, processing goes on: retried later
            self._retry_at = time.monotonic() + self.retry_seconds
            metrics.TASK_PROTECTION_ERRORS.labels(action).inc()
            error = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                error = f"the agent did not answer within {self.timeout_seconds:g} s"
            self.log.warning(
                "task_protection_failed",
                action=action,
                error=error,
                retry_in=self.retry_seconds,
                exc_info=not isinstance(exc, AgentRefused | aiohttp.ClientError | TimeoutError),
            )
            return
        self._retry_at = None
        if enable:
            event = "task_protection_renewed" if self._expires_at is not None else "task_protected"
            self._expires_at = sent + self.minutes * 60
            self._renew_at = sent + self.renew_every_seconds
            metrics.TASK_PROTECTED.set(1)
            self.log.info(event, minutes=self.minutes, expires=protection.get("ExpirationDate"))
        else:
            self._expires_at = None
            metrics.TASK_PROTECTED.set(0)
            self.log.info("task_protection_released", stopping=self._stopping)


def _confirmed(status: int, text: str, enable: bool) -> dict[str, Any]:
    """The agent's ``protection`` object, or AgentRefused saying what it answered instead."""
    try:
        payload = json.loads(text)
    except ValueError:
        raise AgentRefused(f"HTTP {status} with a body that is not JSON: {text[:200]!r}") from None
    if not isinstance(payload, dict):
        raise AgentRefused(f"HTTP {status} with an unexpected body: {text[:200]!r}")
    failure, error = payload.get("failure"), payload.get("error")
    if isinstance(failure, dict):
        reason = ": ".join(
            str(part) for part in (failure.get("Reason"), failure.get("Detail")) if part
        )
        raise AgentRefused(f"ECS refused the change ({reason or 'no reason given'})")
    if isinstance(error, dict):
        raise AgentRefused(f"HTTP {status}: {error.get('Code')}: {error.get('Message')}")
    protection = payload.get("protection")
    if status != 200 or not isinstance(protection, dict):
        raise AgentRefused(f"HTTP {status} with an unexpected body: {text[:200]!r}")
    if protection.get("ProtectionEnabled") is not enable:
        raise AgentRefused(f"asked for ProtectionEnabled={enable}, the agent says {text[:200]!r}")
    return protection
