"""The Lambda entry point: one MediaApi per execution environment, built on first use."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from api_lambda.app import MediaApi
from api_lambda.responses import LambdaResponse
from mediamill_core.settings import load_settings


@functools.cache
def _media_api() -> MediaApi:
    # Built on first use, not at import: importing the handler needs no settings or AWS.
    return MediaApi.from_settings(load_settings())


def handler(event: Mapping[str, Any], context: Any) -> LambdaResponse:
    return _media_api()(event, context)
