"""moto's server in a process of its own: another pid, stopped without a trace, clear failures."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError

from worker.dev.devstack import DEV_CREDENTIALS
from worker.dev.emulator import EmulatorError, MotoProcess


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by whoever adopted it, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _s3(endpoint_url: str) -> object:
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=DEV_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DEV_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )


def test_the_server_runs_in_another_process_and_serves_from_there() -> None:
    aws = MotoProcess()
    endpoint_url = aws.start()
    try:
        assert aws.pid is not None
        assert aws.pid != os.getpid()
        cmdline = Path(f"/proc/{aws.pid}/cmdline").read_bytes().split(b"\0")
        assert b"worker.dev.emulator" in cmdline
        # The listening socket is that process's, not ours.
        port = int(endpoint_url.rsplit(":", 1)[1])
        assert _listens_on(aws.pid, port)
        assert not _listens_on(os.getpid(), port)
        s3 = _s3(endpoint_url)
        s3.create_bucket(Bucket="emulated-elsewhere")  # type: ignore[attr-defined]
        names = [b["Name"] for b in s3.list_buckets()["Buckets"]]  # type: ignore[attr-defined]
        assert "emulated-elsewhere" in names
        # What answered was that process: with it gone, nothing answers.
        os.kill(aws.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(aws.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(EndpointConnectionError):
            s3.list_buckets()  # type: ignore[attr-defined]
    finally:
        aws.stop()


def test_stop_leaves_no_process_and_frees_the_port() -> None:
    aws = MotoProcess()
    with aws as endpoint_url:
        assert aws.pid is not None
        assert _alive(aws.pid)
    assert not _alive(aws.pid)
    host, port = endpoint_url.removeprefix("http://").rsplit(":", 1)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=2).close()


def _listens_on(pid: int, port: int) -> bool:
    """Whether ``pid`` holds the socket listening on loopback ``port`` (from /proc)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # LISTEN
            inodes.add(fields[9])
    try:
        links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
    except OSError:
        return False
    return any(link == f"socket:[{inode}]" for link in links for inode in inodes)


def test_a_child_that_cannot_start_raises_with_its_stderr() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        aws = MotoProcess(port=taken.getsockname()[1])
        with pytest.raises(EmulatorError) as raised:
            aws.start()
    finally:
        taken.close()
    message = str(raised.value)
    assert "exited before it was ready" in message
    assert "exit status 1" in message
    assert "Address already in use" in message  # the child's own traceback, quoted
    assert aws.pid is None


def test_the_child_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from worker.dev.emulator import MotoProcess\n"
            "aws = MotoProcess()\n"
            "aws.start()\n"
            "print(aws.pid, flush=True)\n"
            "time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.kill()  # no stop(), no atexit: only the closed stdin tells the child
        parent.wait()
        deadline = time.monotonic() + 15
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_the_log_keeps_the_childs_stderr(tmp_path: Path) -> None:
    log = tmp_path / "moto.log"
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(EmulatorError):
            MotoProcess(port=taken.getsockname()[1], log=log).start()
    finally:
        taken.close()
    assert "Address already in use" in log.read_text()


def test_start_twice_is_refused_and_stop_twice_is_harmless() -> None:
    aws = MotoProcess()
    aws.start()
    try:
        with pytest.raises(EmulatorError, match="already started"):
            aws.start()
    finally:
        aws.stop()
    aws.stop()
