"""A stand-in for the ECS agent's task scale-in protection endpoint, on loopback.

It answers ``PUT /task-protection/v1/state`` the way the agent does (``{"protection": ...}``,
``{"failure": ...}`` with HTTP 200, ``{"error": ...}`` with 4xx/5xx), refuses requests the agent
would refuse, and records each request with its time. Like the fault proxy it runs its own event
loop in a thread, so synchronous and async tests and worker processes can all use it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiohttp import web

TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/mediamill/0123456789abcdef0123456789abcdef"
Answer = Literal["ok", "error", "failure", "hang"]


@dataclass(frozen=True, slots=True)
class AgentRequest:
    at: float  # time.monotonic()
    method: str
    path: str
    content_type: str
    body: Any  # the decoded JSON, or the raw text when it is not JSON


def closed_port_uri() -> str:
    """A loopback URI with nothing listening: what a worker sees when the agent is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class EcsAgent:
    """Start it, give workers :attr:`uri` as ``ECS_AGENT_URI``, read :meth:`requests`."""

    def __init__(self, answer: Answer = "ok") -> None:
        self.answer: Answer = answer
        self.uri = ""
        self._requests: list[AgentRequest] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None

    def start(self) -> str:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="ecs-agent", daemon=True)
        self._thread.start()
        self.uri = asyncio.run_coroutine_threadsafe(self._serve(), loop).result(timeout=30)
        return self.uri

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop.close()
        self._loop = None

    def requests(self) -> list[AgentRequest]:
        with self._lock:
            return list(self._requests)

    def states(self) -> list[bool | None]:
        """``ProtectionEnabled`` of each request, in order."""
        return [
            r.body.get("ProtectionEnabled") for r in self.requests() if isinstance(r.body, dict)
        ]

    async def _serve(self) -> str:
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/task-protection/v1/state", self._state)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    async def _close(self) -> None:
        if self._closing is not None:
            self._closing.set()  # let hanging answers go, or the server waits for them
        if self._runner is not None:
            await self._runner.cleanup()

    async def _state(self, request: web.Request) -> web.Response:
        text = await request.text()
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = text
        with self._lock:
            self._requests.append(
                AgentRequest(
                    time.monotonic(), request.method, request.path, request.content_type, body
                )
            )
        if request.method != "PUT":
            return _error(
                405, "InvalidParameterException", "Invalid request: only PUT changes the protection"
            )
        # What the agent checks before it calls ECS.
        if not isinstance(body, dict) or set(body) - {"ProtectionEnabled", "ExpiresInMinutes"}:
            return _error(
                400, "InvalidParameterException", "UpdateTaskProtection: failed to decode request"
            )
        enabled, minutes = body.get("ProtectionEnabled"), body.get("ExpiresInMinutes")
        if not isinstance(enabled, bool):
            return _error(
                400,
                "InvalidParameterException",
                "Invalid request: does not contain 'ProtectionEnabled' field",
            )
        if minutes is not None and not (isinstance(minutes, int) and 1 <= minutes <= 2880):
            return _error(
                400, "InvalidParameterException", "Invalid request: expiresInMinutes out of range"
            )
        if self.answer == "hang" and self._closing is not None:
            await self._closing.wait()
            return _error(504, "RequestCanceled", "Timed out calling ECS Task Protection API")
        if self.answer == "error":
            return _error(500, "ServerException", "ECS did not answer")
        if self.answer == "failure":
            failure = {"Arn": TASK_ARN, "Detail": None, "Reason": "TASK_NOT_VALID"}
            return web.json_response({"failure": failure})
        expires = None
        if enabled:
            at = datetime.now(UTC) + timedelta(minutes=minutes or 120)
            expires = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        protection = {"ExpirationDate": expires, "ProtectionEnabled": enabled, "TaskArn": TASK_ARN}
        return web.json_response({"protection": protection})


def _error(status: int, code: str, message: str) -> web.Response:
    error = {"Arn": TASK_ARN, "Code": code, "Message": message}
    return web.json_response({"error": error, "requestID": "0f1e2d3c"}, status=status)
