"""moto's server in a process of its own, so what runs beside it is measured without it.

In-process, moto's request handling takes a large share of the worker's GIL; here it runs as
``python -m worker.dev.emulator``, a child that serves moto's app as
:class:`~worker.dev.devstack.EmbeddedAws` does (DynamoDB writes kept atomic) on loopback and
reports its port on a pipe (HTTP/1.1, connections kept alive: :mod:`worker.dev.moto_http`)::

    with MotoProcess() as endpoint_url:      # or: aws = MotoProcess(); url = aws.start()
        boto3.client("s3", endpoint_url=endpoint_url, ...)
    # stopped: the child has exited and been reaped; aws.pid says which process it was

``start`` and ``stop`` block (from async code: ``anyio.to_thread.run_sync(aws.start)``). The
child exits when its stdin closes, so it never outlives its parent, even one killed with
SIGKILL; it runs in a session of its own, so a Ctrl-C at the terminal reaches only the parent,
which stops it once its worker has drained. A child that fails to start raises
:class:`EmulatorError` carrying the child's stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

# Where the dev stack runs moto: a process of its own (this module), or threads of the caller.
EmulatorMode = Literal["process", "inprocess"]
EMULATOR_MODES: tuple[EmulatorMode, ...] = ("process", "inprocess")

_MODULE = "worker.dev.emulator"
_STDERR_TAIL = 4000  # characters of the child's stderr an error quotes


class EmulatorError(RuntimeError):
    """moto's server process did not start, or stopped answering while starting."""


class MotoProcess:
    """moto's server in a child process on ``host``, on a free port unless ``port`` is given.

    ``log``: a file for the child's stderr (moto's warnings and tracebacks), kept after stop;
    by default a temporary file, quoted by :class:`EmulatorError` and removed on stop.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log: Path | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self._host = host
        self._port = port
        self._log_path = log
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self.endpoint_url = ""
        self.pid: int | None = None

    def start(self) -> str:
        """Start the child, wait until it answers HTTP; returns its endpoint URL."""
        if self._process is not None:
            raise EmulatorError("moto's server process is already started")
        self._stderr = (
            open(self._log_path, "a+b")  # noqa: SIM115 - closed in stop()
            if self._log_path is not None
            else tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        )
        # The child imports this very checkout, however the parent found it.
        source = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(filter(None, (source, os.environ.get("PYTHONPATH"))))
        self._process = subprocess.Popen(
            [sys.executable, "-m", _MODULE, self._host, str(self._port)],
            env={**os.environ, "PYTHONPATH": path},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            start_new_session=True,
        )
        try:
            ready = self._read_ready_line()
            self.endpoint_url = str(ready["endpoint_url"])
            self.pid = self._process.pid
            self._wait_until_answering()
        except BaseException:
            self.stop()
            raise
        return self.endpoint_url

    def stop(self) -> None:
        """Stop the child (SIGTERM, SIGKILL after ``stop_timeout``) and reap it; idempotent."""
        process, self._process = self._process, None
        if process is not None:
            assert process.stdin is not None
            assert process.stdout is not None
            process.stdin.close()
            process.stdout.close()
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(self._stop_timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _read_ready_line(self) -> dict[str, Any]:
        process = self._process
        assert process is not None
        assert process.stdout is not None
        deadline = time.monotonic() + self._start_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._failure(f"did not start within {self._start_timeout:g} s")
            readable, _, _ = select.select([process.stdout], [], [], remaining)
            if not readable:
                continue
            # The child writes its one line in one write of a few dozen bytes: it is whole.
            line = process.stdout.readline()
            if not line:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(self._stop_timeout)
                raise self._failure("exited before it was ready")
            try:
                ready: dict[str, Any] = json.loads(line)
                str(ready["endpoint_url"])
            except (ValueError, KeyError, TypeError):
                raise self._failure(f"sent {line[:200]!r} instead of its endpoint") from None
            return ready

    def _wait_until_answering(self) -> None:
        assert self._process is not None
        # Straight to loopback: a developer's HTTP(S)_PROXY must not carry the probe away.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + self._start_timeout
        while True:
            try:
                with opener.open(f"{self.endpoint_url}/moto-api/", timeout=5) as reply:
                    reply.read()
                return
            except (urllib.error.URLError, OSError) as exc:
                if self._process.poll() is not None:
                    raise self._failure("exited before it answered") from exc
                if time.monotonic() > deadline:
                    raise self._failure(f"did not answer at {self.endpoint_url}: {exc}") from exc
                time.sleep(0.05)

    def _failure(self, what: str) -> EmulatorError:
        process = self._process
        status = process.poll() if process is not None else None
        exit_note = f" (exit status {status})" if status is not None else ""
        stderr = ""
        if self._stderr is not None:
            self._stderr.flush()
            self._stderr.seek(0)
            stderr = self._stderr.read().decode(errors="replace")[-_STDERR_TAIL:].strip()
        detail = f"; its stderr:\n{stderr}" if stderr else "; it wrote nothing on stderr"
        return EmulatorError(f"moto's server process {what}{exit_note}{detail}")


def _serve(host: str, port: int) -> None:
    """The child: serve until stdin reaches EOF (the parent closed it, or died), or SIGTERM."""
    # Only the ready line goes to the parent's pipe; anything moto prints goes to stderr.
    ready = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    from worker.dev.devstack import moto_app
    from worker.dev.moto_http import MotoServer

    # As EmbeddedAws serves (kept-alive HTTP/1.1), but bound here in the main thread: a port
    # that cannot be bound ends the process (werkzeug says why) instead of hanging its start.
    server = MotoServer(host, port, moto_app())
    endpoint_url = server.start()
    ready.write(json.dumps({"endpoint_url": endpoint_url}) + "\n")
    ready.close()
    while sys.stdin.buffer.read(65536):
        pass  # nothing is sent on stdin: it is there to close
    server.stop()  # kept-alive clients see the connection end, not a hang


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
