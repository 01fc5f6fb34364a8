"""A loopback endpoint in front of moto's server that answers SQS's StartMessageMoveTask.

moto has no message move tasks (it answers HTTP 500), so the path the operator commands take on
AWS is tested here: this endpoint answers StartMessageMoveTask in SQS's JSON protocol, from a
script (a task handle, or an error as SQS sends it), records each request, and passes every
other request through to moto unchanged.
"""

from __future__ import annotations

import http.client
import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

TARGET = "AmazonSQS.StartMessageMoveTask"
CONTENT_TYPE = "application/x-amz-json-1.0"


@dataclass(frozen=True, slots=True)
class MoveReply:
    """How StartMessageMoveTask is answered: a task handle, or an error with its status."""

    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)


def started() -> MoveReply:
    return MoveReply(200, {"TaskHandle": f"task-{uuid.uuid4().hex}"})


def refused(code: str, message: str, status: int = 400) -> MoveReply:
    return MoveReply(status, {"__type": f"com.amazonaws.sqs#{code}", "message": message})


class MoveTaskEndpoint:
    """``start()`` gives the endpoint URL; ``reply`` sets the answer; ``requests`` records."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.endpoint = ""
        self.reply = started()
        self.requests: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        host, port = server.server_address[:2]
        self.endpoint = f"http://{host!s}:{port}"
        return self.endpoint

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _handler(endpoint: MoveTaskEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.headers.get("X-Amz-Target") == TARGET:
                endpoint.requests.append(json.loads(body or b"{}"))
                reply = endpoint.reply
                self._send(reply.status, json.dumps(reply.body).encode(), CONTENT_TYPE)
                return
            upstream = http.client.HTTPConnection(
                endpoint.upstream.hostname, endpoint.upstream.port, timeout=60
            )
            try:
                upstream.request(self.command, self.path, body=body, headers=dict(self.headers))
                answer = upstream.getresponse()
                payload = answer.read()
                dropped = {"transfer-encoding", "connection"}
                if self.command != "HEAD":
                    dropped.add("content-length")
                headers = [(k, v) for k, v in answer.getheaders() if k.lower() not in dropped]
                self._send(answer.status, payload, None, headers)
            finally:
                upstream.close()

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _relay

        def _send(
            self,
            status: int,
            payload: bytes,
            content_type: str | None,
            headers: list[tuple[str, str]] | None = None,
        ) -> None:
            self.send_response(status)
            for name, value in headers or []:
                self.send_header(name, value)
            if content_type:
                self.send_header("Content-Type", content_type)
            if self.command != "HEAD":  # a HEAD's length is the object's, passed through
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
