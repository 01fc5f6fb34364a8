"""/healthz reflects the consumer loop's own ticks; /metrics serves Prometheus text."""

from __future__ import annotations

import time

import aiohttp
import pytest

from worker.health import Liveness, check, start_status_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_healthz_follows_the_loop_ticks() -> None:
    liveness = Liveness(stall_seconds=30)
    runner, url = await start_status_server(liveness, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/healthz") as response:
                assert response.status == 503  # not started yet
            liveness.tick("running")
            async with http.get(f"{url}/healthz") as response:
                assert response.status == 200
                assert (await response.json())["state"] == "running"
            liveness.last_tick = time.monotonic() - 31  # the loop stopped ticking
            async with http.get(f"{url}/healthz") as response:
                assert response.status == 503
                assert (await response.json())["status"] == "stalled"
            async with http.get(f"{url}/metrics") as response:
                assert response.status == 200
                assert "mediamill_jobs_in_flight" in await response.text()
    finally:
        await runner.cleanup()


def test_check_refuses_other_schemes_and_closed_ports() -> None:
    assert check("file:///etc/passwd") is False
    assert check("http://127.0.0.1:9") is False
