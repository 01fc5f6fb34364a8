"""The parts of an API Gateway HTTP API (payload 2.0) event that the routes read.

The event's shape is checked before anything reads it: an event API Gateway would not send
(a direct invoke, another payload version, a string where an object belongs) is a 400 that
names the field, never an exception half way through a route.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api_lambda.errors import BadRequest
from api_lambda.validation import has_control_characters, parse

# OpenID Connect Core 1.0 (section 2): a sub is at most 255 ASCII characters. It becomes the
# items' `owner`, the by-owner index's hash key (DynamoDB allows 2048 bytes): a longer one is
# no user id any identity provider issues.
MAX_SUB_BYTES = 255

# Strict: a number is not a string, "true" is not a boolean. Fields the API does not read are
# ignored, so whatever API Gateway adds later passes.
_EVENT_PART = ConfigDict(strict=True, frozen=True, extra="ignore")


class _Http(BaseModel):
    model_config = _EVENT_PART
    method: Annotated[str, Field(min_length=1)]


class _Jwt(BaseModel):
    model_config = _EVENT_PART
    claims: dict[str, Any] | None = None


class _Authorizer(BaseModel):
    model_config = _EVENT_PART
    jwt: _Jwt | None = None


class _RequestContext(BaseModel):
    model_config = _EVENT_PART
    http: _Http
    stage: str | None = None
    request_id: str | None = Field(default=None, alias="requestId")
    authorizer: _Authorizer | None = None


class _Event(BaseModel):
    """What the API reads of a payload 2.0 event, with the types API Gateway sends."""

    model_config = _EVENT_PART
    version: Literal["2.0"]
    raw_path: str = Field(alias="rawPath")
    request_context: _RequestContext = Field(alias="requestContext")
    headers: dict[str, str] | None = None
    query: dict[str, str] | None = Field(default=None, alias="queryStringParameters")
    body: str | None = None
    is_base64_encoded: bool = Field(default=False, alias="isBase64Encoded")


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
    # Why the token's sub was refused as a caller (None: valid, or no sub at all).
    caller_refused: str | None = None
    stage_prefix: str = ""  # "/prod" when a named stage prefixes the routes, else ""

    @classmethod
    def from_event(cls, event: Any) -> ApiRequest:
        """The request an event describes, or BadRequest (``invalid_event``) naming what is off."""
        if not isinstance(event, Mapping):
            raise _invalid_event("the event must be a JSON object")
        try:
            shape = parse(_Event, dict(event))
        except BadRequest as exc:
            raise _invalid_event(exc.message) from None
        context = shape.request_context
        jwt = context.authorizer.jwt if context.authorizer else None
        claims = (jwt.claims if jwt else None) or {}
        sub = claims.get("sub")
        refused = None if sub is None else refused_sub(sub)
        return cls(
            method=context.http.method.upper(),
            path=_route_path(shape.raw_path, context.stage),
            caller=sub if sub is not None and refused is None else None,
            request_id=context.request_id,
            body=shape.body or "",
            body_is_base64=shape.is_base64_encoded,
            headers={name.lower(): value for name, value in (shape.headers or {}).items()},
            query=dict(shape.query or {}),
            caller_refused=refused,
            stage_prefix=_stage_prefix(shape.raw_path, context.stage),
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


def refused_sub(sub: Any) -> str | None:
    """Why a ``sub`` claim cannot be an owner (a key in DynamoDB), or None when it can."""
    if not isinstance(sub, str):
        return "must be a string"
    if not sub.strip():
        return "is empty"
    try:
        size = len(sub.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: no store can keep it
        return "is not valid Unicode text"
    if has_control_characters(sub):
        return "holds control characters"
    if size > MAX_SUB_BYTES:
        return f"is longer than {MAX_SUB_BYTES} bytes"
    return None


def _invalid_event(reason: str) -> BadRequest:
    return BadRequest(
        f"not an API Gateway HTTP API payload 2.0 event: {reason}", code="invalid_event"
    )


def _route_path(raw_path: str, stage: str | None) -> str:
    # A named stage (not $default) is a prefix of rawPath: routes are declared without it.
    prefix = _stage_prefix(raw_path, stage)
    return (raw_path[len(prefix) :] or "/") if prefix else raw_path


def _stage_prefix(raw_path: str, stage: str | None) -> str:
    if stage and stage != "$default":
        prefix = f"/{stage}"
        if raw_path == prefix or raw_path.startswith(prefix + "/"):
            return prefix
    return ""
