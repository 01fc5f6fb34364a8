"""API Gateway payload 2.0 answers: a JSON body with its status and headers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from api_lambda.errors import ApiError

LambdaResponse = dict[str, Any]


def json_response(
    status: int, body: Any, *, headers: Mapping[str, str] | None = None
) -> LambdaResponse:
    return {
        "statusCode": status,
        # Answers carry presigned URLs and a user's own data: no shared cache may keep them.
        "headers": {
            "content-type": "application/json",
            "cache-control": "no-store",
            **(headers or {}),
        },
        "body": json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        "isBase64Encoded": False,
    }


def error_response(error: ApiError) -> LambdaResponse:
    body = {"error": {"code": error.code, "message": error.message}}
    return json_response(error.status, body, headers=error.headers)


def empty_response(status: int, *, headers: Mapping[str, str] | None = None) -> LambdaResponse:
    """An answer without a body (204)."""
    return {
        "statusCode": status,
        "headers": {"cache-control": "no-store", **(headers or {})},
        "body": "",
        "isBase64Encoded": False,
    }
