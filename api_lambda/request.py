"""The parts of an API Gateway HTTP API (payload 2.0) event that the routes read."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from api_lambda.errors import BadRequest


@dataclass(frozen=True, slots=True)
class ApiRequest:
    method: str
    path: str
    caller: str | None
    request_id: str | None
    body: str
    body_is_base64: bool
    headers: Mapping[str, str] = field(default_factory=dict)  # names in lower case
    query: Mapping[str, str] = field(default_factory=dict)  # repeated names joined by ","

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> ApiRequest:
        context = event.get("requestContext") or {}
        http = context.get("http") or {}
        claims = ((context.get("authorizer") or {}).get("jwt") or {}).get("claims") or {}
        sub = claims.get("sub")
        return cls(
            method=str(http.get("method", "")).upper(),
            path=_route_path(str(event.get("rawPath", "")), context.get("stage")),
            caller=sub if isinstance(sub, str) and sub else None,
            request_id=context.get("requestId"),
            body=event.get("body") or "",
            body_is_base64=bool(event.get("isBase64Encoded")),
            headers={
                str(name).lower(): str(value)
                for name, value in (event.get("headers") or {}).items()
            },
            query={
                str(name): str(value)
                for name, value in (event.get("queryStringParameters") or {}).items()
            },
        )

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object, or BadRequest saying what is wrong with it."""
        try:
            raw = (
                base64.b64decode(self.body, validate=True)
                if self.body_is_base64
                else self.body.encode()
            )
            data = json.loads(raw)
        # RecursionError: deeply nested arrays, a cheap way to knock over a naive parser.
        except (binascii.Error, UnicodeError, ValueError, RecursionError):
            raise BadRequest("the body must be a JSON object", code="invalid_json") from None
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object", code="invalid_json")
        return data


def _route_path(raw_path: str, stage: Any) -> str:
    # A named stage (not $default) is a prefix of rawPath: routes are declared without it.
    if isinstance(stage, str) and stage and stage != "$default":
        prefix = f"/{stage}"
        if raw_path == prefix or raw_path.startswith(prefix + "/"):
            return raw_path[len(prefix) :] or "/"
    return raw_path
