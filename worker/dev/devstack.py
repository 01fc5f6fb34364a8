"""The embedded AWS stack: moto's server on loopback plus the resources the template declares.

``mediamill dev``, ``mediamill demo`` and the test-suite all provision through :func:`provision`,
so local runs exercise the same buckets, topics, queues, redrive policy and indexes as production.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from mediamill_core.items import OWED_INDEX, OWED_PROJECTION, OWNER_INDEX
from mediamill_core.keys import ORIGINALS_PREFIX

DEV_REGION = "us-east-1"
# moto accepts any credentials; these keep a developer's real ones out of the emulation.
DEV_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "mediamill-dev",
    "AWS_SECRET_ACCESS_KEY": "mediamill-dev-secret",
}


@dataclass(frozen=True, slots=True)
class StackNames:
    """Resource names derived from one prefix (random per test, fixed for `mediamill dev`)."""

    prefix: str

    @classmethod
    def random(cls, base: str = "mm") -> StackNames:
        return cls(f"{base}-{secrets.token_hex(4)}")

    @property
    def originals_bucket(self) -> str:
        return f"{self.prefix}-originals"

    @property
    def renditions_bucket(self) -> str:
        return f"{self.prefix}-renditions"

    @property
    def table(self) -> str:
        return f"{self.prefix}-media"

    @property
    def queue(self) -> str:
        return f"{self.prefix}-media-jobs"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}-media-jobs-dlq"

    @property
    def uploads_topic(self) -> str:
        return f"{self.prefix}-uploads"

    @property
    def media_topic(self) -> str:
        return f"{self.prefix}-media"


@dataclass(frozen=True, slots=True)
class Stack:
    names: StackNames
    endpoint_url: str
    region: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    uploads_topic_arn: str
    media_topic_arn: str
    max_receive_count: int

    def settings_env(self) -> dict[str, str]:
        """The MEDIAMILL_* variables that point the worker and the API at this stack."""
        return {
            "MEDIAMILL_ENDPOINT_URL": self.endpoint_url,
            "MEDIAMILL_REGION": self.region,
            "MEDIAMILL_ORIGINALS_BUCKET": self.names.originals_bucket,
            "MEDIAMILL_RENDITIONS_BUCKET": self.names.renditions_bucket,
            "MEDIAMILL_TABLE": self.names.table,
            "MEDIAMILL_QUEUE_URL": self.queue_url,
            "MEDIAMILL_MEDIA_TOPIC_ARN": self.media_topic_arn,
            "MEDIAMILL_MAX_RECEIVE_COUNT": str(self.max_receive_count),
        }

    def describe(self) -> dict[str, Any]:
        return {
            "originals_bucket": self.names.originals_bucket,
            "renditions_bucket": self.names.renditions_bucket,
            "table": self.names.table,
            "queue_url": self.queue_url,
            "dlq_url": self.dlq_url,
            "uploads_topic_arn": self.uploads_topic_arn,
            "media_topic_arn": self.media_topic_arn,
        }


def _client(service: str, endpoint_url: str, region: str) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=DEV_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DEV_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}),
    )


def provision(
    endpoint_url: str,
    names: StackNames,
    *,
    region: str = DEV_REGION,
    visibility_timeout: int = 120,
    max_receive_count: int = 5,
    cors_origins: Sequence[str] = ("*",),
) -> Stack:
    """Create the stack's resources, mirroring deploy/ecs's CloudFormation template."""
    s3 = _client("s3", endpoint_url, region)
    sqs = _client("sqs", endpoint_url, region)
    sns = _client("sns", endpoint_url, region)
    ddb = _client("dynamodb", endpoint_url, region)

    for bucket in (names.originals_bucket, names.renditions_bucket):
        s3.create_bucket(Bucket=bucket)
        s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
    s3.put_bucket_lifecycle_configuration(
        Bucket=names.originals_bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "abort-abandoned-multipart-uploads",
                    "Status": "Enabled",
                    "Filter": {"Prefix": ""},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                }
            ]
        },
    )

    # A browser uploads straight to the originals bucket: the presigned POST form, or PUTs of
    # multipart parts whose ETag header it must read to complete the upload. The signature,
    # not the origin, is what authorizes a write.
    s3.put_bucket_cors(
        Bucket=names.originals_bucket,
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedOrigins": list(cors_origins),
                    "AllowedMethods": ["POST", "PUT"],
                    "AllowedHeaders": ["*"],
                    "ExposeHeaders": ["ETag"],
                    "MaxAgeSeconds": 3600,
                }
            ]
        },
    )

    dlq_url = sqs.create_queue(
        QueueName=names.dlq,
        Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600)},
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName=names.queue,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "MessageRetentionPeriod": str(4 * 24 * 3600),
            "ReceiveMessageWaitTimeSeconds": "20",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
            ),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]

    uploads_topic_arn = sns.create_topic(Name=names.uploads_topic)["TopicArn"]
    media_topic_arn = sns.create_topic(Name=names.media_topic)["TopicArn"]
    sns.set_topic_attributes(
        TopicArn=uploads_topic_arn,
        AttributeName="Policy",
        AttributeValue=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "s3.amazonaws.com"},
                        "Action": "sns:Publish",
                        "Resource": uploads_topic_arn,
                        "Condition": {
                            "ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{names.originals_bucket}"}
                        },
                    }
                ],
            }
        ),
    )
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={
            "Policy": json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "sns.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": queue_arn,
                            "Condition": {"ArnEquals": {"aws:SourceArn": uploads_topic_arn}},
                        }
                    ],
                }
            )
        },
    )
    sns.subscribe(TopicArn=uploads_topic_arn, Protocol="sqs", Endpoint=queue_arn)
    s3.put_bucket_notification_configuration(
        Bucket=names.originals_bucket,
        NotificationConfiguration={
            "TopicConfigurations": [
                {
                    "TopicArn": uploads_topic_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {
                        "Key": {"FilterRules": [{"Name": "prefix", "Value": ORIGINALS_PREFIX}]}
                    },
                }
            ]
        },
    )

    ddb.create_table(
        TableName=names.table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "media_id", "AttributeType": "S"},
            {"AttributeName": "owner", "AttributeType": "S"},
            {"AttributeName": "created_at", "AttributeType": "S"},
            {"AttributeName": "owed_shard", "AttributeType": "S"},
            {"AttributeName": "owed_since", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "media_id", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": OWNER_INDEX,
                "KeySchema": [
                    {"AttributeName": "owner", "KeyType": "HASH"},
                    {"AttributeName": "created_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            },
            {
                "IndexName": OWED_INDEX,
                "KeySchema": [
                    {"AttributeName": "owed_shard", "KeyType": "HASH"},
                    {"AttributeName": "owed_since", "KeyType": "RANGE"},
                ],
                "Projection": {
                    "ProjectionType": "INCLUDE",
                    "NonKeyAttributes": list(OWED_PROJECTION),
                },
            },
        ],
    )
    # Abandoned uploads: the API gives each PENDING_UPLOAD item an expiry in epoch seconds,
    # which the worker's claim removes (docs/api.md).
    ddb.update_time_to_live(
        TableName=names.table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "upload_expires_at"},
    )

    return Stack(
        names=names,
        endpoint_url=endpoint_url,
        region=region,
        queue_url=queue_url,
        queue_arn=queue_arn,
        dlq_url=dlq_url,
        uploads_topic_arn=uploads_topic_arn,
        media_topic_arn=media_topic_arn,
        max_receive_count=max_receive_count,
    )


class EmbeddedAws:
    """moto's threaded server on a free loopback port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        # werkzeug logs every request at INFO on stderr; keep the worker's JSON log readable.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self.endpoint_url = ""

    def start(self) -> str:
        self._server.start()
        wsgi = self._server._server
        assert wsgi is not None
        wsgi.app = _AtomicDynamoDB(wsgi.app)
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        return self.endpoint_url

    def stop(self) -> None:
        self._server.stop()


class _AtomicDynamoDB:
    """Serialises moto's DynamoDB requests, as DynamoDB itself makes each item write atomic.

    moto serves requests on threads and checks a condition and applies the update as two
    steps, so two concurrent conditional writes to one item could both pass: real DynamoDB
    never lets that happen, and our claims rely on it.
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB_"):
            return self._app(environ, start_response)
        with self._lock:
            # The body is produced inside the lock: moto has done all its work by then.
            return list(self._app(environ, start_response))


def use_dev_credentials() -> None:
    """Point this process's default credential chain at the emulation's fake keys."""
    os.environ.update(DEV_CREDENTIALS)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.setdefault("AWS_DEFAULT_REGION", DEV_REGION)
