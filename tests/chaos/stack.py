"""The chaos run's view of AWS: straight to moto, never through the fault proxy.

Uploads go through the API (the Lambda's own code) and its presigned POST; what the workers
did is read back from the table, the queues and the media topic's subscriber queue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from api_lambda.app import MediaApi
from mediamill_core.items import decode
from mediamill_core.keys import original_key
from mediamill_core.settings import load_settings
from mediamill_testkit.client import api_event, presigned_post
from tests.chaos.corpus import Sample
from worker.dev.devstack import Stack


@dataclass(frozen=True, slots=True)
class Clients:
    s3: Any
    sqs: Any
    sns: Any
    dynamodb: Any

    @classmethod
    def direct(cls, stack: Stack) -> Clients:
        config = Config(s3={"addressing_style": "path"}, retries={"mode": "standard"})

        def client(service: str) -> Any:
            return boto3.client(  # type: ignore[call-overload]
                service, endpoint_url=stack.endpoint_url, region_name=stack.region, config=config
            )

        return cls(client("s3"), client("sqs"), client("sns"), client("dynamodb"))


def subscribe_queue(clients: Clients, stack: Stack, topic_arn: str, name: str, raw: bool) -> str:
    """A new queue subscribed to ``topic_arn``; raw: bodies are the messages themselves."""
    url = str(clients.sqs.create_queue(QueueName=f"{stack.names.prefix}-{name}")["QueueUrl"])
    arn = clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    clients.sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"RawMessageDelivery": "true" if raw else "false"},
    )
    return url


class UploadClient:
    """POST /uploads through the API handler, then the bytes through the presigned POST."""

    def __init__(self, stack: Stack) -> None:
        values = {k.removeprefix("MEDIAMILL_").lower(): v for k, v in stack.settings_env().items()}
        self._api = MediaApi.from_settings(load_settings(**values))

    def upload(self, sample: Sample, owner: str) -> str:
        body = {"filename": sample.name, "content_type": sample.content_type, "size": sample.size}
        answer = self._api(api_event("POST", "/uploads", sub=owner, body=body))
        if answer["statusCode"] != 201:
            raise RuntimeError(f"POST /uploads refused {sample.name}: {answer}")
        created = json.loads(answer["body"])
        form = created["upload"]
        status = presigned_post(form["url"], form["fields"], sample.path.read_bytes(), sample.name)
        if status not in (200, 201, 204):
            raise RuntimeError(f"S3 refused the POST of {sample.name}: {status}")
        media_id = str(created["media_id"])
        assert form["fields"]["key"] == original_key(media_id)
        return media_id


def receive_all(sqs: Any, url: str, *, hide_for: int = 0) -> list[dict[str, Any]]:
    """Every message visible now. ``hide_for`` 0 deletes them; else they are kept, hidden."""
    found: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=max(hide_for, 30),
        )
        messages = got.get("Messages", [])
        if not messages:
            return found
        found.extend(messages)
        if not hide_for:
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )


def queue_counts(sqs: Any, url: str) -> tuple[int, int]:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def all_items(dynamodb: Any, table: str) -> dict[str, dict[str, Any]]:
    """Every item in the table, consistently read, by media id."""
    items: dict[str, dict[str, Any]] = {}
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = dynamodb.scan(**kwargs)
        for raw in page.get("Items", []):
            item = decode(raw)
            items[str(item["media_id"])] = item
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def missing_renditions(s3: Any, bucket: str, item: dict[str, Any]) -> list[str]:
    """The rendition keys the item names that the renditions bucket does not hold."""
    missing = []
    for rendition in (item.get("renditions") or {}).values():
        key = rendition.get("key")
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except s3.exceptions.ClientError:
            missing.append(str(key))
    return missing
