"""AWS clients, opened once at start-up and shared by every job."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aioboto3
from aiobotocore.session import get_session
from botocore.config import Config

from mediamill_core.botocore_tuning import tune, tune_session
from mediamill_core.settings import Settings
from worker import metrics


@dataclass(frozen=True, slots=True)
class AwsClients:
    s3: Any
    sqs: Any
    sns: Any
    dynamodb: Any
    rekognition: Any


def client_config(settings: Settings) -> Config:
    """botocore's own retry mode (standard: exponential backoff with jitter, retry quotas)."""
    return Config(
        region_name=settings.region,
        # total_max_attempts counts the first try too ("max_attempts" here counts retries only).
        retries={"mode": "standard", "total_max_attempts": settings.aws_max_attempts},
        connect_timeout=10,
        # A long poll holds the connection for up to 20 s: the read timeout must exceed it.
        read_timeout=max(60, settings.receive_wait_seconds + 20),
        max_pool_connections=max(10, settings.concurrency * 4),
        s3=_s3_config(settings.endpoint_url),
    )


def _s3_config(endpoint_url: str | None) -> Any:
    """Path-style addressing on an endpoint of our own (an emulator has no bucket hostnames).

    Over HTTPS, as AWS is reached, botocore leaves an upload's body out of its signature (TLS and
    the request's checksum protect it); over plain HTTP it would hash every body with SHA-256
    as well, which here is switched off too, so an emulator costs a call what AWS costs it.
    """
    if endpoint_url is None:
        return {"addressing_style": "auto"}
    config: dict[str, object] = {"addressing_style": "path"}
    if endpoint_url.startswith("http://"):
        config["payload_signing_enabled"] = False
    return config


@asynccontextmanager
async def open_clients(settings: Settings) -> AsyncIterator[AwsClients]:
    # Timestamps (S3's Last-Modified on every GET and HEAD) parsed without dateutil's parser.
    session = aioboto3.Session(botocore_session=tune_session(get_session()))
    config = client_config(settings)
    # Rekognition may be served elsewhere than the rest (moto has no moderation API).
    endpoints = {"rekognition": settings.rekognition_endpoint_url or settings.endpoint_url}
    async with AsyncExitStack() as stack:
        clients = {
            name: await stack.enter_async_context(
                session.client(
                    name, endpoint_url=endpoints.get(name, settings.endpoint_url), config=config
                )
            )
            for name in ("s3", "sqs", "sns", "dynamodb", "rekognition")
        }
        for client in clients.values():
            client.meta.events.register("before-call", _count_call)
            # Else every S3 call on a new key evaluates the whole endpoint ruleset again, and
            # every call builds its User-Agent header twice.
            tune(client)
        yield AwsClients(**clients)


def _count_call(model: Any, **_: Any) -> None:
    # before-call fires once per API call, before botocore's retries (which are before-send).
    metrics.count_aws_call(model.service_model.service_name, model.name)
