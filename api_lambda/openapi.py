"""The OpenAPI 3.1 description of the API, served at ``GET /openapi.json``.

Request schemas come from the pydantic models that validate the requests, so the document and
the validation cannot drift apart; a test checks the paths against the router's routes.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic.json_schema import models_json_schema

from api_lambda.edits import MediaEdit
from api_lambda.listing import ListQuery
from api_lambda.multipart import CompleteRequest
from api_lambda.uploads import UploadRequest
from mediamill_core.hls import HLS_CONTENT_TYPE

_REF = "#/components/schemas/{model}"
_ERRORS = {
    "400": "The request is invalid; the message says why.",
    "401": "No verified caller: no `sub` claim, or one that cannot name a user.",
    "404": "No such media for this caller: another owner's, deleted, expired, or never existed.",
    "409": "The upload is not in a state that allows this (no multipart upload in progress).",
    "429": "Too many open uploads or bytes pending for this caller; `retry-after` says when.",
}
_NULLABLE_STRING = {"type": ["string", "null"]}
_NULLABLE_INT = {"type": ["integer", "null"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation(
    summary: str,
    answers: dict[str, dict[str, Any]],
    *,
    errors: tuple[str, ...],
    body: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    responses = dict(answers)
    for status in errors:
        responses[status] = _json(_ref("Error"), _ERRORS[status])
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    if parameters:
        operation["parameters"] = parameters
    return operation


_MEDIA_ID = {
    "name": "media_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
}
_NO_CONTENT = {"204": {"description": "Done; no body."}}
_PLAYLIST = {"name": "playlist", "in": "path", "required": True, "schema": {"type": "string"}}
_VARIANT = {"name": "variant", "in": "path", "required": True, "schema": {"type": "string"}}
_PLAYLIST_ANSWER = {
    "200": {
        "description": "An HLS playlist (RFC 8216).",
        "content": {HLS_CONTENT_TYPE: {"schema": {"type": "string"}}},
    }
}

_RESPONSE_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "Rendition": {
        "type": "object",
        "properties": {
            "url": {
                "type": "string",
                "description": "presigned GET, expires; for the hls ladder its master playlist",
            },
            "variants": {
                "type": "array",
                "items": {"type": "object"},
                "description": "hls only: each variant's playlist, size, bandwidth and codecs",
            },
            "content_type": _NULLABLE_STRING,
            "width": _NULLABLE_INT,
            "height": _NULLABLE_INT,
            "bytes": _NULLABLE_INT,
        },
    },
    "Media": {
        "type": "object",
        "required": ["media_id", "status"],
        "properties": {
            "media_id": {"type": "string"},
            "status": {
                "type": "string",
                "enum": ["PENDING_UPLOAD", "PROCESSING", "READY", "FAILED"],
            },
            "kind": {"type": ["string", "null"], "enum": ["image", "video", None]},
            "filename": {"type": "string"},
            "content_type": {"type": "string"},
            "size": {"type": "integer"},
            "album": _NULLABLE_STRING,
            "title": _NULLABLE_STRING,
            "description": _NULLABLE_STRING,
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "metadata": {"type": "object"},
            "location": {"type": ["object", "null"]},
            "renditions": {"type": "object", "additionalProperties": _ref("Rendition")},
            "stages": {"type": "array", "items": {"type": "object"}},
            "warnings": {"type": "array", "items": {"type": "string"}},
            "error": _NULLABLE_STRING,
            "live_video_id": {
                "type": "string",
                "description": "a Live Photo's still: the media id of its clip",
            },
            "companion_of": {
                "type": "string",
                "description": "a Live Photo's clip: the media id of its still",
            },
        },
    },
    "MediaPage": {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": _ref("Media")},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "pass as `cursor` for the next page; null at the end",
            },
        },
    },
    "UploadCreated": {
        "type": "object",
        "required": ["media_id", "expires_at"],
        "description": "`upload` (one presigned POST) or `multipart` (presigned part PUTs).",
        "properties": {
            "media_id": {"type": "string"},
            "expires_at": {"type": "string", "format": "date-time"},
            "upload": {
                "type": "object",
                "properties": {
                    "url": {"type": "string"},
                    "fields": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
            "multipart": {
                "type": "object",
                "properties": {
                    "part_size": {"type": "integer"},
                    "part_count": {"type": "integer"},
                    "parts": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "part_number": {"type": "integer"},
                                "url": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}


def _query_parameters() -> list[dict[str, Any]]:
    properties = ListQuery.model_json_schema()["properties"]
    return [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in properties.items()
    ]


@functools.cache
def openapi_document() -> dict[str, Any]:
    _, request_schemas = models_json_schema(
        [(UploadRequest, "validation"), (MediaEdit, "validation"), (CompleteRequest, "validation")],
        ref_template=_REF,
    )
    media = _json(_ref("Media"), "The item, with presigned rendition URLs.")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mediamill API",
            "version": "1",
            "description": "Uploads and media of the calling user (the JWT `sub` claim).",
        },
        "security": [{"jwt": []}],
        "paths": {
            "/uploads": {
                "post": _operation(
                    "Declare a file and get where to upload it (POST form or multipart parts)",
                    {"201": _json(_ref("UploadCreated"), "Upload created.")},
                    errors=("400", "401", "429"),
                    body="UploadRequest",
                )
            },
            "/uploads/{media_id}/complete": {
                "parameters": [_MEDIA_ID],
                "post": _operation(
                    "Complete a multipart upload",
                    {"200": media},
                    errors=("400", "401", "404", "409"),
                    body="CompleteRequest",
                ),
            },
            "/uploads/{media_id}": {
                "parameters": [_MEDIA_ID],
                "delete": _operation(
                    "Abort a multipart upload", _NO_CONTENT, errors=("401", "404", "409")
                ),
            },
            "/media": {
                "get": _operation(
                    "The caller's media, newest first, a page at a time",
                    {"200": _json(_ref("MediaPage"), "One page.")},
                    errors=("400", "401"),
                    parameters=_query_parameters(),
                )
            },
            "/media/{media_id}": {
                "parameters": [_MEDIA_ID],
                "get": _operation("One item", {"200": media}, errors=("401", "404")),
                "patch": _operation(
                    "Change title, description or album (null clears)",
                    {"200": media},
                    errors=("400", "401", "404"),
                    body="MediaEdit",
                ),
                "delete": _operation(
                    "Delete the original, every rendition and the item",
                    _NO_CONTENT,
                    errors=("401", "404"),
                ),
            },
            "/media/{media_id}/hls/{playlist}": {
                "parameters": [_MEDIA_ID, _PLAYLIST],
                "get": _operation(
                    "The HLS master playlist (served when renditions are presigned)",
                    _PLAYLIST_ANSWER,
                    errors=("401", "404"),
                ),
            },
            "/media/{media_id}/hls/{variant}/{playlist}": {
                "parameters": [_MEDIA_ID, _VARIANT, _PLAYLIST],
                "get": _operation(
                    "A variant playlist, its segments as presigned GETs",
                    _PLAYLIST_ANSWER,
                    errors=("401", "404"),
                ),
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document.")},
                }
            },
        },
        "components": {
            "securitySchemes": {"jwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {**request_schemas["$defs"], **_RESPONSE_SCHEMAS},
        },
    }
