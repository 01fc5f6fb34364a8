"""The worker's HTTP side: Prometheus metrics on /metrics and a liveness check on /healthz.

/healthz fails (503) with a list of reasons: the worker has not started, its loop has stalled,
or a watched part reports a problem (receives failing, a stuck stage thread, a job past its
time). ``check`` is the client the ``mediamill health`` command uses; it imports nothing heavy,
so the container health check answers fast.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from aiohttp import web

HEALTH_PATH = "/healthz"


class HealthSource(Protocol):
    """A part of the worker that knows what is wrong with it (nothing: an empty list)."""

    def health_problems(self) -> list[str]: ...


@dataclass(slots=True)
class Liveness:
    """Refreshed by the consumer loop itself; stale means the loop has stalled."""

    stall_seconds: float
    last_tick: float = field(default_factory=time.monotonic)
    state: str = "starting"
    sources: list[HealthSource] = field(default_factory=list)

    def tick(self, state: str | None = None) -> None:
        self.last_tick = time.monotonic()
        if state is not None:
            self.state = state

    def watch(self, *sources: HealthSource) -> None:
        self.sources.extend(sources)

    def stalled_for(self) -> float:
        return time.monotonic() - self.last_tick

    def reasons(self) -> list[str]:
        """Why the worker is unhealthy; empty when it is fine."""
        found: list[str] = []
        if self.state == "starting":
            found.append("the worker has not started consuming yet")
        elif self.stalled_for() > self.stall_seconds:
            found.append(
                f"the consumer loop has not ticked for {self.stalled_for():.0f} s "
                f"(limit {self.stall_seconds:g} s)"
            )
        for source in self.sources:
            found.extend(source.health_problems())
        return found

    @property
    def healthy(self) -> bool:
        return not self.reasons()


def status_app(liveness: Liveness) -> web.Application:
    # Imported here, not at the top: the health check command must start fast.
    import anyio
    from aiohttp import web
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    async def metrics(_: web.Request) -> web.Response:
        # In a thread: some gauges are read at scrape time from the disk (worker.spool).
        body = await anyio.to_thread.run_sync(generate_latest, REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        reasons = liveness.reasons()
        payload = {
            "status": "unhealthy" if reasons else "ok",
            "state": liveness.state,
            "seconds_since_tick": round(liveness.stalled_for(), 3),
            "reasons": reasons,
        }
        return web.json_response(payload, status=503 if reasons else 200)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get(HEALTH_PATH, healthz)
    return app


class StatusServerError(RuntimeError):
    """The status server could not bind its address: a setting to change, not a crash."""


async def start_status_server(
    liveness: Liveness, host: str, port: int
) -> tuple[web.AppRunner, str]:
    """Start the server; returns the runner (to clean up) and its base URL with the bound port."""
    from aiohttp import web

    runner = web.AppRunner(status_app(liveness), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        # Most often a second worker on one machine: say which setting moves it, not a trace.
        raise StatusServerError(
            f"cannot serve /metrics and {HEALTH_PATH} on {host}:{port}: {exc.strerror or exc}; "
            "another process holds the port (a second worker?): set MEDIAMILL_METRICS_PORT "
            "(0 picks a free one) or MEDIAMILL_METRICS_HOST"
        ) from exc
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound_port = sockets[0].getsockname()[1] if sockets else port
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return runner, f"http://{shown_host}:{bound_port}"


@dataclass(frozen=True, slots=True)
class HealthAnswer:
    """What /healthz said, or why it could not be asked."""

    healthy: bool
    reasons: Sequence[str] = ()

    def describe(self) -> str:
        if self.healthy:
            return "healthy"
        return "unhealthy: " + ("; ".join(self.reasons) or "no reason given")


def health_url(url: str) -> str:
    """The /healthz URL from a status server's base URL or from the /healthz URL itself."""
    base = url.rstrip("/")
    return base if base.endswith(HEALTH_PATH) else base + HEALTH_PATH


def check(url: str, timeout: float) -> HealthAnswer:
    """For the container health check: ask /healthz, well within ECS's 5 s check timeout."""
    if not url.startswith(("http://", "https://")):
        return HealthAnswer(False, [f"{url!r} is not an http:// or https:// URL"])
    target = health_url(url)
    # Straight to the worker: an HTTP(S)_PROXY set for the task's AWS calls must not apply.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(target, timeout=timeout) as response:
            status, body = int(response.status), response.read()
    except urllib.error.HTTPError as answer:
        status = answer.code
        try:
            body = answer.read()
        except OSError:
            body = b""
    except (urllib.error.URLError, OSError, ValueError) as exc:
        cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(cause, TimeoutError):
            return HealthAnswer(False, [f"{target} did not answer within {timeout:g} s"])
        return HealthAnswer(False, [f"cannot reach {target}: {cause}"])
    reasons: list[str] = []
    try:
        payload = json.loads(body)
        if isinstance(payload, dict) and isinstance(payload.get("reasons"), list):
            reasons = [str(reason) for reason in payload["reasons"]]
    except ValueError:
        pass  # not our status server's JSON: the status code alone decides
    if status == 200:
        return HealthAnswer(True)
    return HealthAnswer(False, reasons or [f"{target} answered HTTP {status}"])
