"""The worker's HTTP side: Prometheus metrics on /metrics and a liveness check on /healthz."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest


@dataclass(slots=True)
class Liveness:
    """Refreshed by the consumer loop itself; stale means the loop has stalled."""

    stall_seconds: float
    last_tick: float = field(default_factory=time.monotonic)
    state: str = "starting"

    def tick(self, state: str | None = None) -> None:
        self.last_tick = time.monotonic()
        if state is not None:
            self.state = state

    def stalled_for(self) -> float:
        return time.monotonic() - self.last_tick

    @property
    def healthy(self) -> bool:
        return self.state != "starting" and self.stalled_for() <= self.stall_seconds


def status_app(liveness: Liveness) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        payload = {
            "status": "ok" if liveness.healthy else "stalled",
            "state": liveness.state,
            "seconds_since_tick": round(liveness.stalled_for(), 3),
        }
        return web.json_response(payload, status=200 if liveness.healthy else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


async def start_status_server(
    liveness: Liveness, host: str, port: int
) -> tuple[web.AppRunner, str]:
    """Start the server; returns the runner (to clean up) and its base URL with the bound port."""
    runner = web.AppRunner(status_app(liveness), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound_port = sockets[0].getsockname()[1] if sockets else port
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return runner, f"http://{shown_host}:{bound_port}"


def check(url: str, timeout: float = 5.0) -> bool:
    """For the container health check: True when /healthz answers 200."""
    if not url.startswith(("http://", "https://")):
        return False
    try:
        target = f"{url.rstrip('/')}/healthz"
        with urllib.request.urlopen(target, timeout=timeout) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False
