"""Fixtures for the API Lambda: the app on the test stack and payload 2.0 events."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from api_lambda.app import MediaApi
from worker.settings import Settings

Event = dict[str, Any]
MakeEvent = Callable[..., Event]


@pytest.fixture
def api(settings: Settings) -> MediaApi:
    return MediaApi.from_settings(settings)


def _event(
    method: str,
    path: str,
    *,
    body: Any = None,
    raw_body: str | None = None,
    base64_body: bool = False,
    sub: str | None = "alice",
    stage: str = "$default",
) -> Event:
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
    event: Event = {
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


@pytest.fixture
def make_event() -> MakeEvent:
    return _event


@pytest.fixture
def call(api: MediaApi) -> Callable[..., tuple[int, dict[str, str], Any]]:
    """Send an event to the app; answer (status, headers, decoded JSON body)."""

    def send(method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
        answer = api(_event(method, path, **kwargs), None)
        assert answer["isBase64Encoded"] is False
        return answer["statusCode"], answer["headers"], json.loads(answer["body"])

    return send
