"""The queues an operator command works on: each lane's queue and the dead-letter queue behind it.

The dead-letter queue is not configured apart: it is read from the queue's redrive policy, as
the worker learns it, so the commands and the worker can never disagree about where it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

from botocore.config import Config

from mediamill_core.botocore_tuning import boto3_session, tune
from mediamill_core.settings import ENV_PREFIX, Settings
from worker.aws import client_config
from worker.queue import BACKFILL, MEDIA, LaneName

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

# The worker's own lane names: the commands and the consumer name the queues alike.
LANES: tuple[LaneName, ...] = (MEDIA, BACKFILL)
_SETTING = {"media": "queue_url", "backfill": "backfill_queue_url"}


class OpsError(Exception):
    """An operator command cannot do what it was asked; the message says why."""


@dataclass(frozen=True, slots=True)
class OneTry:
    """Clients for calls whose failure has a fallback (StartMessageMoveTask): no retries, so a
    service that lacks the call (moto answers HTTP 500) is told apart at once."""

    sqs: SQSClient


@dataclass(frozen=True, slots=True)
class OpsClients:
    sqs: SQSClient
    s3: S3Client
    dynamodb: DynamoDBClient
    one_try: OneTry


def ops_clients(settings: Settings) -> OpsClients:
    """Clients on the worker's endpoint, region and retry settings."""
    config = client_config(settings)

    def client(service: Literal["sqs", "s3", "dynamodb"], config: Config = config) -> object:
        made = boto3_session().client(
            service, endpoint_url=settings.endpoint_url, region_name=settings.region, config=config
        )
        # `inspect` heads and lists object after object: one endpoint resolution per bucket.
        tune(made)
        return made

    once = config.merge(Config(retries={"mode": "standard", "total_max_attempts": 1}))
    return OpsClients(
        sqs=cast("SQSClient", client("sqs")),
        s3=cast("S3Client", client("s3")),
        dynamodb=cast("DynamoDBClient", client("dynamodb")),
        one_try=OneTry(sqs=cast("SQSClient", client("sqs", once))),
    )


@dataclass(frozen=True, slots=True)
class Lane:
    """One lane's queue, and its dead-letter queue if the queue has a redrive policy."""

    name: LaneName
    queue_url: str
    queue_arn: str
    dlq_url: str | None = None
    dlq_arn: str | None = None
    max_receive_count: int | None = None

    @property
    def dlq_name(self) -> str:
        return self.dlq_arn.rsplit(":", 1)[-1] if self.dlq_arn else "(none)"


def lane_url(settings: Settings, name: LaneName) -> str:
    """The lane's queue URL from the settings, or OpsError naming the variable to set."""
    field = _SETTING[name]
    url = getattr(settings, field)
    if not url:
        raise OpsError(f"{ENV_PREFIX}{field.upper()} is not set: there is no {name} queue to use")
    return str(url)


def find_lane(sqs: SQSClient, settings: Settings, name: LaneName) -> Lane:
    url = lane_url(settings, name)
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["QueueArn", "RedrivePolicy"]
    ).get("Attributes", {})
    lane = Lane(name=name, queue_url=url, queue_arn=attributes["QueueArn"])
    policy = attributes.get("RedrivePolicy")
    if not policy:
        return lane
    redrive = json.loads(policy)
    dlq_arn = str(redrive["deadLetterTargetArn"])
    return Lane(
        name=name,
        queue_url=url,
        queue_arn=lane.queue_arn,
        dlq_url=queue_url_of(sqs, dlq_arn),
        dlq_arn=dlq_arn,
        max_receive_count=int(redrive["maxReceiveCount"]),
    )


def find_lanes(sqs: SQSClient, settings: Settings, wanted: LaneName | None) -> list[Lane]:
    """The lane asked for, or every lane whose queue is configured (the media queue at least)."""
    if wanted is not None:
        return [find_lane(sqs, settings, wanted)]
    lane_url(settings, "media")
    return [find_lane(sqs, settings, name) for name in LANES if getattr(settings, _SETTING[name])]


def dead_letter_lanes(lanes: list[Lane]) -> list[Lane]:
    """The lanes with a DLQ, each DLQ once (two queues may share one)."""
    found: dict[str, Lane] = {}
    for lane in lanes:
        if lane.dlq_url is not None and lane.dlq_url not in found:
            found[lane.dlq_url] = lane
    return list(found.values())


def queue_url_of(sqs: SQSClient, arn: str) -> str:
    """arn:aws:sqs:REGION:ACCOUNT:NAME to the queue's URL."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise OpsError(f"{arn!r} is not an SQS queue ARN")
    return sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]
