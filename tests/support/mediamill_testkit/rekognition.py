"""A local HTTP endpoint speaking Rekognition's JSON protocol, answering from a per-test script.

moto answers DetectLabels with one fixed label and has no DetectModerationLabels, so tests that
need real response shapes (parents, categories, moderation), throttling or server errors point
the real botocore client here. Every request is recorded with its decoded image bytes. Like the
service, it refuses bytes that are neither JPEG nor PNG, or larger than 5 MB.

An ``S3Object`` image is read, as the service reads it, from the S3 that ``reads_s3`` names
(moto's), at most 15 MB; one it cannot read (no such object, or no S3 given) is refused with
``InvalidS3ObjectException``, as the service refuses one its caller may not read.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

TARGET_PREFIX = "RekognitionService."
CONTENT_TYPE = "application/x-amz-json-1.1"
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_S3_IMAGE_BYTES = 15 * 1024 * 1024
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer: a status, a JSON body and extra headers."""

    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def error(
    code: str, message: str, status: int = 400, headers: dict[str, str] | None = None
) -> Reply:
    """An error as the service sends it: ``__type`` names the exception."""
    return Reply(status, {"__type": code, "message": message}, headers or {})


THROTTLED = error("ThrottlingException", "Rate exceeded")
SERVER_ERROR = error("InternalServerError", "Amazon Rekognition experienced a service issue", 500)
BAD_FORMAT = error("InvalidImageFormatException", "Request has invalid image format")
DENIED = error("AccessDeniedException", "User is not authorized to perform: rekognition:*")
UNREADABLE_OBJECT = error(
    "InvalidS3ObjectException",
    "Unable to get object metadata from S3. Check object key, region and/or access permissions.",
)


@dataclass(frozen=True, slots=True)
class Request:
    """What one call sent: the operation, its JSON body and the image bytes, decoded (or read
    from S3, for an ``S3Object``; empty when it could not be read)."""

    operation: str
    body: dict[str, Any]
    image: bytes

    @property
    def s3_object(self) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.body.get("Image", {}).get("S3Object")
        return found


class RekognitionServer:
    """``start()`` gives the endpoint URL; ``script()`` queues answers; ``requests`` records."""

    def __init__(self) -> None:
        self.endpoint = ""
        self.requests: list[Request] = []
        self._scripts: dict[str, deque[Reply]] = {}
        self._defaults: dict[str, Reply] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._s3: Any = None

    def reads_s3(self, endpoint_url: str, region: str = "us-east-1") -> None:
        """Read ``S3Object`` images from this S3 (with the dev credentials in the environment)."""
        self._s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)

    def _read(self, location: dict[str, Any]) -> bytes | None:
        if self._s3 is None:
            return None
        extra = {"VersionId": location["Version"]} if location.get("Version") else {}
        try:
            response = self._s3.get_object(
                Bucket=location.get("Bucket", ""), Key=location.get("Name", ""), **extra
            )
        except (ClientError, BotoCoreError, ParamValidationError):
            return None
        data: bytes = response["Body"].read()
        return data

    def start(self) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        host, port = server.server_address[:2]
        self.endpoint = f"http://{host!s}:{port}"
        return self.endpoint

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def script(self, operation: str, *replies: Reply) -> None:
        """Answer the next calls of ``operation`` with ``replies`` in turn, then the default."""
        with self._lock:
            self._scripts.setdefault(operation, deque()).extend(replies)

    def answer(self, operation: str, reply: Reply) -> None:
        """Answer every call of ``operation`` not otherwise scripted with ``reply``."""
        with self._lock:
            self._defaults[operation] = reply

    def calls(self, operation: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.operation == operation]

    def reply(self, operation: str, body: dict[str, Any]) -> Reply:
        location = body.get("Image", {}).get("S3Object")
        if location is not None:
            read = self._read(location)
            image, limit = read or b"", MAX_S3_IMAGE_BYTES
        else:
            image, limit = base64.b64decode(body.get("Image", {}).get("Bytes", "")), MAX_IMAGE_BYTES
        with self._lock:
            self.requests.append(Request(operation, body, image))
            if location is not None and read is None:
                return UNREADABLE_OBJECT  # the service says so before anything scripted
            queued = self._scripts.get(operation)
            scripted = queued.popleft() if queued else None
            default = self._defaults.get(operation)
        if not image.startswith(_SIGNATURES):
            return BAD_FORMAT
        if len(image) > limit:
            return error("ImageTooLargeException", "Image size is too large")
        if scripted is not None:
            return scripted
        if default is not None:
            return default
        return error("UnknownOperationException", f"no answer scripted for {operation}")


def _handler(server: RekognitionServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            target = self.headers.get("X-Amz-Target", "")
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if (
                self.path != "/"
                or not target.startswith(TARGET_PREFIX)
                or self.headers.get("Content-Type") != CONTENT_TYPE
            ):
                self._send(error("UnknownOperationException", f"not Rekognition: {target!r}"))
                return
            self._send(server.reply(target.removeprefix(TARGET_PREFIX), json.loads(raw)))

        def _send(self, reply: Reply) -> None:
            data = json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: pytest shows failures, not every request."""

    return Handler
