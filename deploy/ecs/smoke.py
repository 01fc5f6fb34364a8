"""`make image-smoke`: the built image's worker takes an upload to READY and exits 0 on SIGTERM.

It runs `mediamill dev --no-worker` (moto, the stack and the local API on loopback), starts the
image's own entrypoint in a buildah working container on the host network (chroot isolation:
no container runtime needed), waits for the image's HEALTHCHECK command to pass, uploads a photo
through the API, waits for READY, then sends SIGTERM to the worker as ECS does. It needs root
and buildah; the timings are printed as one JSON object at the end.

    python deploy/ecs/smoke.py [--image localhost/mediamill-worker:0.1.0] [--env NAME=VALUE]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio

from worker.dev.demo import DemoClient
from worker.dev.local_api import dev_token
from worker.dev.samples import write_jpeg

ROOT = Path(__file__).resolve().parents[2]
# Scratch outside the repository, as for `make image` (deploy/ecs/build-image.sh).
LOGS = Path(os.environ.get("BUILD_CACHE", "/var/tmp/mediamill-build"))  # noqa: S108


class SmokeFailure(Exception):
    """The image did not behave as the service needs."""


def _version() -> str:
    for line in (ROOT / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise SmokeFailure("no version in pyproject.toml")


def _buildah(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["buildah", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise SmokeFailure(f"buildah {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done


def _free_port() -> int:
    # The container shares the host's network: the worker's status port must not be taken.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def image_config(image: str) -> dict[str, Any]:
    inspected = json.loads(_buildah("inspect", "--type", "image", image).stdout)
    config: dict[str, Any] = inspected["Docker"]["config"]
    size = _buildah("images", "--format", "{{.Size}}", image).stdout.strip()
    config["_size"] = size
    return config


@contextmanager
def dev_stack() -> Iterator[dict[str, Any]]:
    """`mediamill dev --no-worker`; yields what it prints, stops it on exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "dev", "--no-worker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise SmokeFailure(f"mediamill dev exited ({process.wait()}) before printing")
        yield json.loads(line)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def working_container(image: str) -> Iterator[str]:
    name = f"mediamill-smoke-{secrets.token_hex(4)}"
    _buildah("from", "--name", name, image)
    try:
        yield name
    finally:
        _buildah("rm", name, check=False)


def _run_args(container: str, env: dict[str, str], command: list[str]) -> list[str]:
    pairs = [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
    return [
        "buildah",
        "run",
        "--isolation",
        "chroot",
        "--network",
        "host",
        *pairs,
        container,
        "--",
        *command,
    ]


def _worker_pid(parent: int, command: list[str]) -> int | None:
    """The entrypoint's own process under `buildah run` and its chroot helpers (ECS signals
    the container's main process, not a wrapper)."""
    tail = [arg.encode() for arg in command[1:]]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
            ppid = _parent_of(int(entry.name))
        except OSError:
            continue
        ours = not argv[0].startswith(b"buildah") and argv[len(argv) - len(tail) :] == tail
        if ours and _descends(ppid, parent):
            return int(entry.name)
    return None


def _parent_of(pid: int) -> int:
    return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])


def _descends(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = _parent_of(pid)
        except OSError:
            return False
    return False


def check_contents(container: str) -> None:
    """Wheels only: no libvips or FFmpeg from the system, no compiler, a non-root user."""
    probe = _buildah(
        "run",
        "--isolation",
        "chroot",
        container,
        "--",
        "sh",
        "-c",
        "id -u; command -v ffmpeg gcc cc || true;"
        " ldconfig -p | grep -E 'libvips|libavcodec' || true",
    ).stdout.split()
    if probe[0] == "0":
        raise SmokeFailure("the image runs as root")
    if probe[1:]:
        raise SmokeFailure(f"the image has system media libraries or a compiler: {probe[1:]}")


def wait_healthy(
    container: str,
    env: dict[str, str],
    test: list[str],
    worker: subprocess.Popen[bytes],
    deadline: float,
) -> float:
    """Run the image's HEALTHCHECK command until it passes; returns the seconds it took."""
    if test[:1] != ["CMD"]:
        raise SmokeFailure(f"HEALTHCHECK is not exec form: {test}")
    started, said = time.monotonic(), ""
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise SmokeFailure(f"the worker exited {worker.returncode} before it was healthy")
        done = subprocess.run(_run_args(container, env, test[1:]), capture_output=True, text=True)
        if done.returncode == 0:
            return time.monotonic() - started
        said = done.stdout.strip()
        time.sleep(1)
    raise SmokeFailure(f"the health check never passed: {said}")


async def upload_to_ready(api: str, photo: Path, deadline: float) -> tuple[dict[str, Any], float]:
    async with aiohttp.ClientSession() as http:
        client = DemoClient(http, api, dev_token("smoke-user"))
        started = time.monotonic()
        media_id, _ = await client.upload(photo, lambda _: None)
        while time.monotonic() < deadline:
            item = await client.media(media_id)
            if item["status"] in ("READY", "FAILED"):
                return item, time.monotonic() - started
            await anyio.sleep(0.25)
    raise SmokeFailure(f"{media_id} did not finish in time (last status {item['status']})")


def smoke(image: str, timeout: float, extra_env: dict[str, str]) -> dict[str, Any]:
    config = image_config(image)
    command = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    test = (config.get("Healthcheck") or {}).get("Test") or []
    if not test:
        raise SmokeFailure("the image has no HEALTHCHECK (built in OCI format?)")
    deadline = time.monotonic() + timeout
    LOGS.mkdir(parents=True, exist_ok=True)
    log_path = LOGS / "smoke-worker.log"
    with dev_stack() as dev, working_container(image) as container:
        check_contents(container)
        env = {**dev["worker_env"], "MEDIAMILL_METRICS_PORT": str(_free_port()), **extra_env}
        with log_path.open("w") as log:
            started = time.monotonic()
            worker = subprocess.Popen(
                _run_args(container, env, command), stdout=log, stderr=subprocess.STDOUT
            )
            try:
                healthy = wait_healthy(container, env, test, worker, deadline)
                with tempfile.TemporaryDirectory() as scratch:
                    photo = write_jpeg(Path(scratch) / "photo.jpg", camera=True, orientation=6)
                    item, to_ready = anyio.run(upload_to_ready, dev["api"], photo, deadline)
                if item["status"] != "READY":
                    raise SmokeFailure(f"the upload ended {item['status']}: {item.get('error')}")
                pid = _worker_pid(worker.pid, command)
                if pid is None:
                    raise SmokeFailure("cannot find the worker's process under buildah run")
                stopping = time.monotonic()
                os.kill(pid, signal.SIGTERM)
                status = worker.wait(timeout=150)
                stopped = time.monotonic() - stopping
            finally:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
        if status != 0:
            raise SmokeFailure(f"the worker exited {status} on SIGTERM (log: {log_path})")
        renditions = sorted(item.get("renditions") or {})
    return {
        "image": image,
        "image_size": config["_size"],
        "user": config.get("User"),
        "healthy_after_seconds": round(healthy, 2),
        "upload_to_ready_seconds": round(to_ready, 2),
        "exit_after_sigterm_seconds": round(stopped, 2),
        "exit_status": status,
        "total_seconds": round(time.monotonic() - started, 2),
        "renditions": renditions,
        "worker_log": str(log_path),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=f"localhost/mediamill-worker:{_version()}")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for the whole run")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="more worker settings"
    )
    args = parser.parse_args()
    extra = dict(pair.partition("=")[::2] for pair in args.env)
    try:
        print(json.dumps(smoke(args.image, args.timeout, extra), indent=2))
    except SmokeFailure as failure:
        print(f"image-smoke: {failure}", file=sys.stderr)
        log = LOGS / "smoke-worker.log"
        if log.exists():
            print(f"--- the worker's last lines ({log}):", file=sys.stderr)
            print("\n".join(log.read_text().splitlines()[-10:]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
