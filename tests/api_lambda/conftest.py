"""Fixtures for the API Lambda: the app on the test stack and payload 2.0 events."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from api_lambda.app import MediaApi
from mediamill_testkit.client import api_event
from worker.settings import Settings

Event = dict[str, Any]
MakeEvent = Callable[..., Event]


@pytest.fixture
def api(settings: Settings) -> MediaApi:
    return MediaApi.from_settings(settings)


@pytest.fixture
def make_event() -> MakeEvent:
    return api_event


@pytest.fixture
def call(api: MediaApi) -> Callable[..., tuple[int, dict[str, str], Any]]:
    """Send an event to the app; answer (status, headers, decoded JSON body)."""

    def send(method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
        answer = api(api_event(method, path, **kwargs), None)
        assert answer["isBase64Encoded"] is False
        return answer["statusCode"], answer["headers"], json.loads(answer["body"])

    return send
