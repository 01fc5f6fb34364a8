"""Fixtures for the API Lambda: the app on the test stack and payload 2.0 events."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import anyio
import boto3
import pytest
from boto3.dynamodb.types import TypeSerializer
from botocore.config import Config

from api_lambda.app import MediaApi
from api_lambda.clients import s3_client, sns_client
from mediamill_core.keys import new_media_id, object_tag, rendition_key
from mediamill_core.settings import Settings
from mediamill_testkit.client import api_event
from worker.aws import open_clients
from worker.claims import Lease, StoredObject
from worker.store import ClaimOutcome, MediaStore

Event = dict[str, Any]
MakeEvent = Callable[..., Event]
PutItem = Callable[..., tuple[str, dict[str, bytes]]]
Requests = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def api(settings: Settings) -> MediaApi:
    return MediaApi.from_settings(settings)


@pytest.fixture
def make_event() -> MakeEvent:
    return api_event


def send_event(
    api: MediaApi,
    method: str,
    path: str,
    *,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, dict[str, str], Any]:
    event = api_event(method, path, **kwargs)
    if query is not None:
        event["queryStringParameters"] = query
    event["headers"].update(headers or {})
    answer = api(event, None)
    assert answer["isBase64Encoded"] is False
    body = json.loads(answer["body"]) if answer["body"] else None
    return answer["statusCode"], answer["headers"], body


@pytest.fixture
def send() -> Callable[..., tuple[int, dict[str, str], Any]]:
    """``send_event`` for an app a test builds itself."""
    return send_event


@pytest.fixture
def call(api: MediaApi) -> Callable[..., tuple[int, dict[str, str], Any]]:
    """Send an event to the app; answer (status, headers, decoded JSON body or None)."""

    def send(method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
        return send_event(api, method, path, **kwargs)

    return send


@pytest.fixture
def recording_api(settings: Settings) -> tuple[MediaApi, Requests]:
    """The app on a DynamoDB client that records each request it sends: (operation, params)."""
    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        config=Config(retries={"mode": "standard"}),
    )
    requests: Requests = []
    dynamodb.meta.events.register(
        "provide-client-params.dynamodb",
        lambda params, model, **_: requests.append((model.name, dict(params))),
    )
    api = MediaApi(settings, s3=s3_client(settings), dynamodb=dynamodb, sns=sns_client(settings))
    return api, requests


@pytest.fixture
def claim(settings: Settings) -> Callable[..., ClaimOutcome]:
    """What the worker's claim makes of an upload event for ``media_id``."""

    def run(media_id: str, etag: str = "etag-1") -> ClaimOutcome:
        async def claim() -> ClaimOutcome:
            async with open_clients(settings) as aws:
                store = MediaStore(aws.dynamodb, settings.table)
                obj = StoredObject(etag, 1, None, None, None, object_tag(etag, None))

                async def s3_holds() -> str:
                    return etag

                answer = await store.claim(
                    media_id,
                    obj,
                    Lease(new_media_id(), "message-1", 60),
                    receive_count=1,
                    uploaded_at=None,
                    current_etag=s3_holds,
                )
                return answer.outcome

        return anyio.run(claim)

    return run


@pytest.fixture
def put_ready(dynamodb: Any, s3: Any, settings: Settings) -> PutItem:
    """Store a READY item, its original and two renditions; answer (id, rendition bytes)."""

    def put(owner: str = "alice", **overrides: Any) -> tuple[str, dict[str, bytes]]:
        media_id = overrides.pop("media_id", None) or new_media_id()
        files = {"thumb": b"\x89PNG thumbnail bytes", "preview": b"\xff\xd8 preview bytes"}
        types = {"thumb": "image/webp", "preview": "image/jpeg"}
        renditions = {}
        for name, data in files.items():
            key = rendition_key(media_id, "0123456789ab", name, types[name])
            s3.put_object(Bucket=settings.renditions_bucket, Key=key, Body=data)
            renditions[name] = {
                "key": key,
                "content_type": types[name],
                "width": 250 if name == "thumb" else 1440,
                "height": 188 if name == "thumb" else 1080,
                "bytes": len(data),
            }
        s3.put_object(
            Bucket=settings.originals_bucket, Key=f"originals/{media_id}", Body=b"original"
        )
        item = {
            "media_id": media_id,
            "owner": owner,
            "status": "READY",
            "kind": "image",
            "filename": "holiday.jpg",
            "content_type": "image/jpeg",
            "size": 4_000_000,
            "album": "Summer",
            "created_at": "2024-06-01T10:00:00.000Z",
            "updated_at": "2024-06-01T10:00:05.250Z",
            "source": {"bucket": settings.originals_bucket, "key": f"originals/{media_id}"},
            "metadata": {"camera": "Pixel", "exposure": Decimal("0.008"), "iso": Decimal(100)},
            "location": {"lat": Decimal("48.8584"), "lon": Decimal("2.2945")},
            "renditions": renditions,
            "stages": [
                {"name": "probe", "version": "1", "outcome": "ok", "seconds": Decimal("0.0123")},
                {"name": "thumbnail", "version": "2", "outcome": "ok", "seconds": Decimal("0.5")},
            ],
            "warnings": ["tagging skipped"],
            **overrides,
        }
        serializer = TypeSerializer()
        dynamodb.put_item(
            TableName=settings.table,
            Item={name: serializer.serialize(value) for name, value in item.items()},
        )
        return media_id, files

    return put
