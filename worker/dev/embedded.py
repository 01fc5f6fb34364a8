"""`mediamill dev`: moto's server on loopback, the stack's resources, the API and a worker.

The same Worker and MediaApi classes as production run here; only the endpoint differs. Without
the embedded worker (``--no-worker``), ``worker_env`` points a worker run elsewhere (a container
built by ``make image``, another shell) at the same stack. moto serves from a process of its own
(``emulator="process"``, :mod:`worker.dev.emulator`) so that its request handling does not share
the worker's GIL; ``"inprocess"`` runs it on threads of this process instead.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from mediamill_core.settings import Settings, load_settings
from worker.consumer import Worker
from worker.dev.devstack import (
    DEV_CREDENTIALS,
    EmbeddedAws,
    Stack,
    StackNames,
    provision,
    use_dev_credentials,
)
from worker.dev.emulator import EMULATOR_MODES, EmulatorMode, MotoProcess
from worker.registry import StageRegistry

_DEV_DEFAULTS: dict[str, Any] = {
    "metrics_host": "127.0.0.1",
    "metrics_port": 0,
    "visibility_timeout": 60,
    "receive_wait_seconds": 2,
    "retry_base_seconds": 2,
    "drain_seconds": 10,
}
# moto answers DetectLabels but has no DetectModerationLabels (a 500 every time): unless told
# otherwise, the tagging stage asks only for labels here.
_DEV_STAGE_OPTIONS: dict[str, dict[str, Any]] = {"tagging": {"moderation": False}}


@dataclass(frozen=True, slots=True)
class Emulation:
    """Where moto runs: its own process (``log`` holds its stderr) or this one."""

    mode: EmulatorMode
    pid: int
    log: Path | None = None

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "pid": self.pid, "log": str(self.log) if self.log else None}


@dataclass(slots=True)
class RunningStack:
    stack: Stack
    settings: Settings
    api_url: str
    worker: Worker
    emulation: Emulation
    worker_running: bool = True

    @property
    def rekognition_emulated(self) -> bool:
        """Tagging asks moto's Rekognition, whose labels are canned: not read from the media."""
        tagging = any(stage.name == "tagging" for stage in self.worker.registry.order)
        own = self.settings.rekognition_endpoint_url
        return tagging and own in (None, self.settings.endpoint_url)

    def worker_env(self) -> dict[str, str]:
        """The environment a worker started elsewhere needs to serve this stack as ours would."""
        env = {**DEV_CREDENTIALS, **self.stack.settings_env()}
        env["MEDIAMILL_VISIBILITY_TIMEOUT"] = str(self.settings.visibility_timeout)
        if self.settings.stage_options:
            env["MEDIAMILL_STAGE_OPTIONS"] = json.dumps(self.settings.stage_options)
        return env

    def describe(self) -> dict[str, Any]:
        status = self.worker.status_url if self.worker_running else None
        return {
            "api": self.api_url,
            "aws": self.stack.endpoint_url,
            "emulator": self.emulation.describe(),
            "metrics": f"{status}/metrics" if status else None,
            "healthz": f"{status}/healthz" if status else None,
            "region": self.stack.region,
            "resources": self.stack.describe(),
            "worker_env": self.worker_env(),
        }


@asynccontextmanager
async def embedded_stack(
    *,
    prefix: str = "mediamill-dev",
    api_port: int = 0,
    overrides: dict[str, Any] | None = None,
    run_worker: bool = True,
    emulator: EmulatorMode = "process",
) -> AsyncIterator[RunningStack]:
    """Start everything (the worker unless told not to); on exit it drains, the emulation stops."""
    use_dev_credentials()
    with tempfile.TemporaryDirectory(prefix="mediamill-dev-") as scratch:
        server: MotoProcess | EmbeddedAws
        if emulator == "process":
            log = Path(scratch) / "moto.log"
            server = MotoProcess(log=log)
        elif emulator == "inprocess":
            server, log = EmbeddedAws(), None
        else:
            raise ValueError(f"emulator must be one of {', '.join(EMULATOR_MODES)}: {emulator!r}")
        endpoint = await anyio.to_thread.run_sync(server.start)
        try:
            pid = server.pid if isinstance(server, MotoProcess) else os.getpid()
            assert pid is not None  # a started MotoProcess knows its child's
            where = Emulation(emulator, pid, log)
            async with _serving(
                endpoint, prefix, api_port, overrides, run_worker, where
            ) as running:
                yield running
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(server.stop)


@asynccontextmanager
async def _serving(
    endpoint: str,
    prefix: str,
    api_port: int,
    overrides: dict[str, Any] | None,
    run_worker: bool,
    emulation: Emulation,
) -> AsyncIterator[RunningStack]:
    """The stack provisioned on the emulation at ``endpoint``, its API served, its worker run."""
    from api_lambda.app import MediaApi
    from worker.dev.local_api import serve_api

    stack = await anyio.to_thread.run_sync(
        lambda: provision(endpoint, StackNames(prefix), visibility_timeout=60)
    )
    values: dict[str, Any] = {
        key.removeprefix("MEDIAMILL_").lower(): value for key, value in stack.settings_env().items()
    }
    # Laptop-friendly defaults, unless the environment says otherwise.
    for name, value in _DEV_DEFAULTS.items():
        if f"MEDIAMILL_{name.upper()}" not in os.environ:
            values[name] = value
    values.update(overrides or {})
    settings = load_settings(**values)
    if "MEDIAMILL_STAGE_OPTIONS" not in os.environ and "stage_options" not in values:
        enabled = settings.stages  # None: every installed stage, built-in tagging too
        options = {
            name: chosen
            for name, chosen in _DEV_STAGE_OPTIONS.items()
            if enabled is None or name in enabled
        }
        settings = load_settings(**values, stage_options=options)
    registry = StageRegistry.from_settings(settings.stages, settings.stage_options)
    worker = Worker(settings, registry, burst=False)
    api = MediaApi.from_settings(settings)
    runner, api_url = await serve_api(api, port=api_port)
    try:
        running = RunningStack(
            stack, settings, api_url, worker, emulation, worker_running=run_worker
        )
        if not run_worker:
            yield running
            return
        async with anyio.create_task_group() as group:
            group.start_soon(worker.run)
            await worker.started.wait()
            yield running
            worker.request_stop()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
