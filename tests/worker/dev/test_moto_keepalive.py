"""moto's server keeps connections alive, as AWS does: one connection serves a client's calls,
framing stays right for every kind of response, idle and leftover connections end."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import aioboto3
import boto3
import pytest

from worker.dev.devstack import moto_app
from worker.dev.emulator import MotoProcess
from worker.dev.moto_http import MotoServer


class CountingServer(MotoServer):
    """The dev stack's server, counting the TCP connections it accepts."""

    def __init__(self, idle_timeout: float = 60.0) -> None:
        super().__init__("127.0.0.1", 0, moto_app(), idle_timeout=idle_timeout)
        self.accepted = 0

        self.sockets: list[socket.socket] = []

    def process_request(self, request: Any, client_address: Any) -> None:
        self.accepted += 1
        self.sockets.append(request)
        super().process_request(request, client_address)


@pytest.fixture
def served() -> Iterator[tuple[CountingServer, str]]:
    server = CountingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield server, f"http://{host!s}:{port}"
    server.shutdown()
    server.server_close()
    thread.join()


def _client(service: str, endpoint_url: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint_url, region_name="us-east-1")


def _s3_calls(s3: Any, bucket: str) -> None:
    """Responses of every framing: sized, empty 200, HEAD, 204, streamed GetObject, errors."""
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="big", Body=b"x" * 300_000)
    for _ in range(3):
        assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == b"x" * 300_000
        assert s3.head_object(Bucket=bucket, Key="big")["ContentLength"] == 300_000
        s3.delete_object(Bucket=bucket, Key="absent")  # 204, no body
        with pytest.raises(s3.exceptions.NoSuchKey):
            s3.get_object(Bucket=bucket, Key="absent")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["big"]


def test_the_emulator_process_answers_many_requests_on_one_connection() -> None:
    with MotoProcess() as endpoint_url:
        host, port = endpoint_url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        sockets = []
        for method in ("GET", "HEAD", "GET", "POST", "GET"):
            connection.request(method, "/moto-api/")
            reply = connection.getresponse()
            reply.read()
            assert not reply.will_close
            sockets.append(connection.sock)  # http.client opens a new one after a close
        assert sockets[0] is not None
        assert all(sock is sockets[0] for sock in sockets)


def test_calls_of_every_kind_share_one_server_connection(
    served: tuple[CountingServer, str],
) -> None:
    server, endpoint_url = served
    _s3_calls(_client("s3", endpoint_url), "counted")
    assert server.accepted == 1


async def test_the_workers_async_clients_reuse_their_connections(
    served: tuple[CountingServer, str],
) -> None:
    server, endpoint_url = served
    session = aioboto3.Session(region_name="us-east-1")
    async with session.client("sqs", endpoint_url=endpoint_url) as sqs:
        url = (await sqs.create_queue(QueueName="kept"))["QueueUrl"]
        for n in range(5):
            await sqs.send_message(QueueUrl=url, MessageBody=f"m{n}")
            got = await sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
            await sqs.delete_message(
                QueueUrl=url, ReceiptHandle=got["Messages"][0]["ReceiptHandle"]
            )
        # An empty long poll holds the connection for its wait, then leaves it usable.
        assert "Messages" not in await sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
        await sqs.get_queue_attributes(QueueUrl=url)
    assert server.accepted == 1


def test_a_long_poll_answers_a_message_sent_meanwhile_on_another_connection(
    served: tuple[CountingServer, str],
) -> None:
    _, endpoint_url = served
    sqs = _client("sqs", endpoint_url)
    url = sqs.create_queue(QueueName="poll")["QueueUrl"]
    sender = threading.Timer(
        0.5, lambda: _client("sqs", endpoint_url).send_message(QueueUrl=url, MessageBody="late")
    )
    sender.start()
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20)
    sender.join()
    assert [m["Body"] for m in got["Messages"]] == ["late"]


def _raw(endpoint_url: str) -> socket.socket:
    host, port = endpoint_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _response(reader: Any) -> tuple[int, dict[str, str]]:
    """One response read off a raw connection, framed by its own headers only."""
    status = int(reader.readline().split()[1])
    headers: dict[str, str] = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


def test_a_body_the_app_leaves_unread_does_not_become_the_next_request(
    served: tuple[CountingServer, str],
) -> None:
    _, endpoint_url = served
    host = endpoint_url.removeprefix("http://")
    with _raw(endpoint_url) as sock:
        # moto's dashboard ignores a body; the second request follows it on the same socket.
        request = f"GET /moto-api/ HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n\r\nhello"
        sock.sendall(request.encode() + f"GET /moto-api/ HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        reader = sock.makefile("rb")
        for _ in range(2):
            status, headers = _response(reader)
            assert status == 200
            assert headers.get("connection") != "close"
            reader.read(int(headers["content-length"]))


def test_chunked_uploads_and_head_responses_keep_the_framing(
    served: tuple[CountingServer, str],
) -> None:
    server, endpoint_url = served
    s3 = _client("s3", endpoint_url)
    s3.create_bucket(Bucket="chunks")
    host, port = endpoint_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("PUT", "/chunks/k", body=iter([b"ab", b"cd"]), encode_chunked=True)
    assert connection.getresponse().read() == b""
    connection.request("HEAD", "/chunks/k")  # unsigned: moto denies it, with a length, no body
    head = connection.getresponse()
    assert head.read() == b""
    connection.request("GET", "/moto-api/")
    after = connection.getresponse()
    assert (after.status, after.will_close) == (200, False)
    assert b"moto" in after.read()
    assert s3.get_object(Bucket="chunks", Key="k")["Body"].read() == b"abcd"
    assert server.accepted == 2  # the boto3 client's, and http.client's one for all three


def test_an_idle_connection_is_closed_and_its_thread_ends() -> None:
    server = CountingServer(idle_timeout=0.3)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        before = threading.active_count()
        host, port = server.server_address[:2]
        with socket.create_connection((str(host), port), timeout=10) as sock:
            time.sleep(0.1)  # the server has a thread for it by now
            assert threading.active_count() == before + 1
            assert sock.recv(1) == b""  # closed by the server, not by us
        deadline = time.monotonic() + 5
        while threading.active_count() > before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert threading.active_count() == before
    finally:
        server.shutdown()
        server.server_close()
        serving.join()


def test_closing_the_server_ends_its_kept_alive_connections() -> None:
    server = CountingServer()
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(str(host), port, timeout=10)
    connection.request("GET", "/moto-api/")
    connection.getresponse().read()
    assert connection.sock is not None
    server.shutdown()
    server.server_close()
    serving.join()
    # Kept alive until now, idle: the server closed it rather than leaving it to the timeout.
    assert connection.sock.recv(1) == b""


@pytest.mark.parametrize("body", [b"abcde", b"a"], ids=["longer", "shorter"])
def test_a_body_that_disagrees_with_its_length_ends_the_connection(body: bytes) -> None:
    def lying(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "3")])
        return [body]

    server = MotoServer("127.0.0.1", 0, lying)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        host, port = server.server_address[:2]
        with socket.create_connection((str(host), port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            reader = sock.makefile("rb")
            status, headers = _response(reader)
            assert (status, headers["content-length"]) == (200, "3")
            # Never more than promised, and no next response framed after a wrong one.
            assert reader.read() == body[:3]
    finally:
        server.shutdown()
        server.server_close()
        serving.join()


def test_a_response_is_not_held_back_for_the_client_s_ack(
    served: tuple[CountingServer, str],
) -> None:
    # Headers and body are two writes: with Nagle's algorithm on, the body would wait for the
    # client's delayed ACK on every call of a kept-alive connection.
    server, endpoint_url = served
    sqs = _client("sqs", endpoint_url)
    sqs.list_queues()  # answered, and the connection still open: the client holds it
    assert server.sockets
    for accepted in server.sockets:
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
