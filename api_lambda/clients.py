"""Sync boto3 clients for the API, on the settings' endpoint and region."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from botocore.config import Config

from mediamill_core.botocore_tuning import boto3_session, tune
from mediamill_core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient


def _config(settings: Settings) -> Config:
    return Config(
        # total_max_attempts, as the worker: the setting counts the first try too.
        retries={"mode": "standard", "total_max_attempts": settings.aws_max_attempts},
        # API Gateway gives up after 30 s: fail inside that budget, with our own error body.
        connect_timeout=3,
        read_timeout=10,
    )


def s3_client(settings: Settings) -> S3Client:
    """The client that also signs upload policies and rendition URLs, so clients reach its host."""
    presigning = Config(
        # botocore presigns with SigV2 unless told otherwise, and S3 is retiring SigV2.
        signature_version="s3v4",
        # An emulated endpoint has no per-bucket host names; on AWS, virtual-hosted style makes
        # botocore sign for the bucket's regional host, not the global one that newer regions
        # refuse.
        s3={"addressing_style": "path" if settings.endpoint_url else "virtual"},
    )
    client = boto3_session().client(
        "s3",
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        config=_config(settings).merge(presigning),
    )
    # Else every URL signed for a new key evaluates the whole endpoint ruleset again.
    tune(client)
    return client


def dynamodb_client(settings: Settings) -> DynamoDBClient:
    client: DynamoDBClient = _plain_client("dynamodb", settings)
    return client


def sns_client(settings: Settings) -> SNSClient:
    """For media.deleted on the media topic."""
    client: SNSClient = _plain_client("sns", settings)
    return client


def _plain_client(service: Literal["dynamodb", "sns"], settings: Settings) -> Any:
    client = boto3_session().client(
        service,
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        config=_config(settings),
    )
    tune(client)  # no endpoint parameter to leave out today: kept right if one comes
    return client
