"""moto's app served over HTTP/1.1 with keep-alive, as AWS endpoints serve and our clients pool.

werkzeug's development server, which moto's server mode uses, answers every request with
``Connection: close``: each AWS call of the worker then opens a TCP connection and the server a
thread for it, a cost production (pooled connections to AWS) does not pay. werkzeug closes on
purpose: after a response it drains whatever the client still sends, which on a kept-alive
connection would swallow the next request. :class:`KeepAliveHandler` serves each request as
werkzeug does (moto's handler builds the environ) but frames both directions itself:

- the request body is read no further than its ``Content-Length`` (or its last chunk); what the
  app left unread is drained before the next request, the connection closed if that is large;
- a response carries its ``Content-Length``, or is chunked; HEAD, 1xx, 204 and 304 carry no
  body; a response whose body disagrees with its ``Content-Length`` ends the connection;
- a connection idle for :data:`IDLE_TIMEOUT` seconds is closed, and :meth:`MotoServer.server_close`
  closes the kept-alive connections still open, so none outlives the server.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import traceback
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import IO, Any, cast

from moto.moto_server.werkzeug_app import MotoRequestHandler
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.serving import ThreadedWSGIServer
from werkzeug.wsgi import LimitedStream

# Longer than the clients' own idle limits (aiobotocore drops a connection idle for 12 s)
# so that a client rarely sends on a connection the server is closing; short enough that a
# client which keeps connections but no longer calls does not hold threads for long.
IDLE_TIMEOUT = 60.0
# Request body the app left unread and is drained to keep the connection; more, and it closes.
_DRAIN_LIMIT = 16 * 1024 * 1024
_DRAIN_READ = 64 * 1024
_BODYLESS = frozenset({204, 304})

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]


class KeepAliveHandler(MotoRequestHandler):
    """moto's request handler, speaking HTTP/1.1 with persistent connections."""

    protocol_version = "HTTP/1.1"
    # A response goes out in two writes (headers, then body): with Nagle's algorithm the second
    # waits for the client's delayed ACK, tens of milliseconds per call on a kept-alive socket.
    disable_nagle_algorithm = True
    server: MotoServer
    _waiting = True

    def setup(self) -> None:
        super().setup()
        # The socket's timeout, waiting for a request or on a stalled peer alike.
        self.connection.settimeout(self.server.idle_timeout)

    def handle_one_request(self) -> None:
        self._waiting = True  # until the request line and headers are in
        super().handle_one_request()

    def log_error(self, format: str, *args: Any) -> None:
        # The base logs every socket timeout; one while waiting for a request is the idle
        # limit closing a kept-alive connection, routine and not worth a line.
        if self._waiting and format.startswith("Request timed out"):
            return
        super().log_error(format, *args)

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        if not environ.get("wsgi.input_terminated"):  # chunked bodies are bounded already
            try:
                length = max(0, int(environ.get("CONTENT_LENGTH") or 0))
            except ValueError:
                length, self.close_connection = 0, True  # where the body ends is unknown
            environ["wsgi.input"] = LimitedStream(cast(IO[bytes], self.rfile), length)
        return environ

    def run_wsgi(self) -> None:
        self._waiting = False
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.environ = environ = self.make_environ()
        reply = _Reply(self, environ)
        try:
            _respond(self.server.app(environ, reply.start_response), reply)
        except (TimeoutError, ConnectionError) as error:
            self.close_connection = True
            self.connection_dropped(error, environ)
            return
        except Exception:
            if self.server.passthrough_errors:
                raise
            self.close_connection = True
            self.server.log("error", f"Error on request:\n{traceback.format_exc()}")
            if not reply.sent:  # an answer is still possible: a 500, as werkzeug gives
                fallback = _Reply(self, environ)
                _respond(InternalServerError()(environ, fallback.start_response), fallback)
            return
        if not _drained(environ["wsgi.input"]):
            self.close_connection = True


class MotoServer(ThreadedWSGIServer):
    """werkzeug's threaded server with :class:`KeepAliveHandler`, closing what it keeps open."""

    def __init__(self, host: str, port: int, app: Any, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.idle_timeout = idle_timeout
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._serving: threading.Thread | None = None
        # werkzeug logs every request at INFO on stderr; keep the worker's JSON log readable.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        super().__init__(host, port, app, handler=KeepAliveHandler)

    def start(self) -> str:
        """Serve on a daemon thread; the endpoint URL of the bound address."""
        self._serving = threading.Thread(target=self.serve_forever, name="moto", daemon=True)
        self._serving.start()
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        """Stop serving, end the kept-alive connections, and wait for the serving thread."""
        self.shutdown()
        self.server_close()
        if self._serving is not None:
            self._serving.join()
            self._serving = None

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        """Stop listening and end the connections still open (idle or mid-request)."""
        super().server_close()
        with self._open_lock:
            still_open = list(self._open)
        for connection in still_open:
            # Their threads see the end of the stream and finish; shutdown_request closes.
            with contextlib.suppress(OSError):  # the peer closed it first
                connection.shutdown(socket.SHUT_RDWR)


class _Reply:
    """One response: the WSGI ``start_response``/``write`` pair, framed for a kept connection."""

    def __init__(self, handler: KeepAliveHandler, environ: dict[str, Any]) -> None:
        self._handler = handler
        self._wfile = cast(IO[bytes], handler.wfile)
        self._head_only = environ["REQUEST_METHOD"] == "HEAD"
        self._status: str | None = None
        self._headers: list[tuple[str, str]] | None = None
        self._chunked = False
        self._left: int | None = None  # body bytes the Content-Length still promises
        self._bodyless = False
        self.sent = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: _ExcInfo | None = None
    ) -> Callable[[bytes], object]:
        if exc_info is not None and exc_info[1] is not None:
            if self.sent:
                raise exc_info[1].with_traceback(exc_info[2])
        elif self._headers is not None:
            raise AssertionError("start_response called twice")
        self._status, self._headers = status, headers
        return self.write

    def write(self, data: bytes) -> None:
        if not self.sent:
            self._send_head()
        if not data or self._bodyless:
            return
        if self._chunked:
            self._wfile.write(b"%x\r\n%b\r\n" % (len(data), data))
            return
        if self._left is not None:
            if len(data) > self._left:  # more than promised: the rest would corrupt framing
                data, self._handler.close_connection = data[: self._left], True
            self._left -= len(data)
        self._wfile.write(data)

    def finish(self) -> None:
        if not self.sent:
            self._send_head()
        if self._chunked:
            self._wfile.write(b"0\r\n\r\n")
        elif self._left:  # less than promised: the client waits for bytes that never come
            self._handler.close_connection = True

    def _send_head(self) -> None:
        if self._status is None or self._headers is None:
            raise AssertionError("write() before start_response")
        handler = self._handler
        code_text, _, reason = self._status.partition(" ")
        code = int(code_text)
        handler.send_response(code, reason)
        length: str | None = None
        for name, value in self._headers:
            if name.lower() == "content-length":
                length = value
            handler.send_header(name, value)
        self._bodyless = self._head_only or code < 200 or code in _BODYLESS
        if not self._bodyless:
            if length is not None and length.isdigit():
                self._left = int(length)
            elif handler.request_version >= "HTTP/1.1":
                self._chunked = True
                handler.send_header("Transfer-Encoding", "chunked")
            else:  # an HTTP/1.0 client reads such a body until the connection closes
                handler.close_connection = True
        if handler.close_connection:
            handler.send_header("Connection", "close")
        elif handler.request_version < "HTTP/1.1":  # it asked for keep-alive: say it is kept
            handler.send_header("Connection", "keep-alive")
        handler.end_headers()
        self.sent = True


def _respond(body: Iterable[bytes], reply: _Reply) -> None:
    try:
        for data in body:
            reply.write(data)
        reply.finish()
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


def _drained(body: IO[bytes]) -> bool:
    """Read what the app left of the request body; False if the connection cannot go on."""
    left = _DRAIN_LIMIT
    try:
        while left > 0:
            data = body.read(min(_DRAIN_READ, left))
            if not data:
                return True
            left -= len(data)
    except (OSError, ValueError, HTTPException):  # the peer went, or a chunk was malformed
        return False
    return False
