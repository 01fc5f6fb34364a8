"""Uploads through the real API and presigned POST, and waits on items, for worker tests."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from api_lambda.app import MediaApi
from mediamill_core.items import decode
from mediamill_core.settings import Settings


def api_event(
    method: str,
    path: str,
    *,
    body: Any = None,
    raw_body: str | None = None,
    base64_body: bool = False,
    sub: str | None = "alice",
    stage: str = "$default",
) -> dict[str, Any]:
    """An event as API Gateway sends it; ``body`` is JSON-encoded, ``raw_body`` sent as is."""
    text = raw_body if raw_body is not None else (None if body is None else json.dumps(body))
    if text is not None and base64_body:
        text = base64.b64encode(text.encode()).decode()
    context: dict[str, Any] = {
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
        "requestId": "test-request",
        "routeKey": "$default",
        "stage": stage,
    }
    if sub is not None:
        context["authorizer"] = {"jwt": {"claims": {"sub": sub}, "scopes": None}}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": context,
        "isBase64Encoded": base64_body,
    }
    if text is not None:
        event["body"] = text
    return event


def presigned_post(url: str, fields: dict[str, str], data: bytes, filename: str) -> int:
    """multipart/form-data POST, fields first and the file last, as browsers send it."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        header = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        parts.append(f"{header}{value}\r\n".encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        url,
        data=b"".join(parts),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)


class Uploader:
    """Creates uploads through MediaApi (as the Lambda would) and sends the bytes to S3."""

    def __init__(self, settings: Settings, owner: str = "user-1") -> None:
        self.api = MediaApi.from_settings(settings)
        self.settings = settings
        self.owner = owner

    def create(self, path: Path, content_type: str = "image/png") -> dict[str, Any]:
        body = {"filename": path.name, "content_type": content_type, "size": path.stat().st_size}
        response = self.api(api_event("POST", "/uploads", sub=self.owner, body=body))
        assert response["statusCode"] == 201, response
        created: dict[str, Any] = json.loads(response["body"])
        return created

    def upload(self, path: Path, content_type: str = "image/png") -> str:
        created = self.create(path, content_type)
        status = presigned_post(
            created["upload"]["url"], created["upload"]["fields"], path.read_bytes(), path.name
        )
        assert status in (200, 201, 204)
        return str(created["media_id"])

    def get(self, media_id: str) -> dict[str, Any]:
        response = self.api(api_event("GET", f"/media/{media_id}", sub=self.owner))
        assert response["statusCode"] == 200, response
        item: dict[str, Any] = json.loads(response["body"])
        return item


def raw_item(dynamodb: Any, table: str, media_id: str) -> dict[str, Any] | None:
    found = dynamodb.get_item(
        TableName=table, Key={"media_id": {"S": media_id}}, ConsistentRead=True
    )
    return decode(found["Item"]) if "Item" in found else None


def wait_for_status(
    dynamodb: Any, table: str, media_id: str, statuses: tuple[str, ...], within: float = 60.0
) -> dict[str, Any]:
    """Poll the item until its status is one of ``statuses`` (a condition, not a timing)."""
    deadline = time.monotonic() + within
    item: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        item = raw_item(dynamodb, table, media_id)
        if item is not None and item.get("status") in statuses:
            return item
        time.sleep(0.1)
    raise AssertionError(f"item {media_id} never reached {statuses}; last: {item}")


def drain_events(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message on a queue subscribed to the media topic, parsed, and deleted."""
    events = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        if not got.get("Messages"):
            return events
        for message in got["Messages"]:
            events.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def queue_counts(sqs: Any, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def resend_test_event(s3: Any, sqs: Any, bucket: str, queue_url: str) -> None:
    """Leave exactly one s3:TestEvent on the queue, whatever order the stack was made in.

    S3 sends one whenever a notification configuration is set. The template orders the
    originals bucket after the topic's policy, not after the queue's subscription, so the first
    may or may not have reached the queue: empty it, and set the configuration once more.
    """
    sqs.purge_queue(QueueUrl=queue_url)
    notifications = s3.get_bucket_notification_configuration(Bucket=bucket)
    notifications.pop("ResponseMetadata")
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=notifications)
