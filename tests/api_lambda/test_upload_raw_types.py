"""POST /uploads takes camera RAW files: their media types, and octet-stream by a RAW name."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from mediamill_core.keys import EXTENSIONS, RAW_TYPES
from mediamill_core.settings import Settings

Call = Callable[..., tuple[int, dict[str, str], Any]]


def _stored_type(dynamodb: Any, settings: Settings, media_id: str) -> str:
    item = dynamodb.get_item(
        TableName=settings.table, Key={"media_id": {"S": media_id}}, ConsistentRead=True
    )["Item"]
    return str(item["content_type"]["S"])


@pytest.mark.parametrize(("extension", "media_type"), sorted(RAW_TYPES.items()))
def test_each_raw_media_type_is_accepted(
    call: Call, dynamodb: Any, settings: Settings, extension: str, media_type: str
) -> None:
    upload = {"filename": f"DSC_0001.{extension.upper()}", "content_type": media_type, "size": 9}
    status, _, body = call("POST", "/uploads", body=upload)
    assert status == 201, body
    assert _stored_type(dynamodb, settings, body["media_id"]) == media_type


@pytest.mark.parametrize("extension", sorted(RAW_TYPES))
def test_octet_stream_with_a_raw_name_is_taken_as_that_raw_type(
    call: Call, dynamodb: Any, settings: Settings, extension: str
) -> None:
    # What browsers declare for a file type the system does not know.
    upload = {"filename": f"IMG.{extension}", "content_type": "application/octet-stream", "size": 9}
    status, _, body = call("POST", "/uploads", body=upload)
    assert status == 201, body
    fields = body["upload"]["fields"]
    assert fields["Content-Type"] == RAW_TYPES[extension]
    policy = json.loads(base64.b64decode(fields["policy"]))
    assert {"Content-Type": RAW_TYPES[extension]} in policy["conditions"]
    assert _stored_type(dynamodb, settings, body["media_id"]) == RAW_TYPES[extension]


@pytest.mark.parametrize("filename", ["photo.jpg", "archive.zip", "dng", "photo.dng.exe"])
def test_octet_stream_with_any_other_name_is_still_refused(call: Call, filename: str) -> None:
    upload = {"filename": filename, "content_type": "application/octet-stream", "size": 9}
    status, _, body = call("POST", "/uploads", body=upload)
    assert status == 400
    assert "'application/octet-stream' is not accepted" in json.dumps(body)


def test_raw_types_name_their_extension_for_keys() -> None:
    assert {EXTENSIONS[media_type] for media_type in RAW_TYPES.values()} == set(RAW_TYPES)
