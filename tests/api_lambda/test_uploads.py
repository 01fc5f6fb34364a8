"""POST /uploads: validation, the stored item, and the presigned POST policy."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from api_lambda.app import MediaApi
from mediamill_core.keys import is_media_id
from mediamill_core.settings import Settings, load_settings

Call = Callable[..., tuple[int, dict[str, str], Any]]
JPEG = {"filename": "holiday.jpg", "content_type": "image/jpeg", "size": 2048}


def _policy(fields: dict[str, str]) -> dict[str, Any]:
    return json.loads(base64.b64decode(fields["policy"]))


def _stored(dynamodb: Any, settings: Settings, media_id: str) -> dict[str, Any]:
    answer = dynamodb.get_item(
        TableName=settings.table, Key={"media_id": {"S": media_id}}, ConsistentRead=True
    )
    return answer["Item"]


def _item_count(dynamodb: Any, settings: Settings) -> int:
    return dynamodb.scan(TableName=settings.table, Select="COUNT")["Count"]


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_policy_pins_bucket_key_type_exact_size_and_15_minutes(
    call: Call, settings: Settings
) -> None:
    before = datetime.now(UTC)
    status, _, body = call("POST", "/uploads", body={**JPEG, "album": "Summer"})
    after = datetime.now(UTC)

    assert status == 201
    media_id = body["media_id"]
    assert is_media_id(media_id)
    key = f"originals/{media_id}"
    fields = body["upload"]["fields"]
    assert fields["key"] == key
    assert fields["Content-Type"] == "image/jpeg"
    assert "holiday" not in key

    policy = _policy(fields)
    conditions = policy["conditions"]
    assert {"bucket": settings.originals_bucket} in conditions
    assert {"key": key} in conditions
    assert {"Content-Type": "image/jpeg"} in conditions
    assert ["content-length-range", 2048, 2048] in conditions
    assert {"x-amz-algorithm": "AWS4-HMAC-SHA256"} in conditions
    # No prefix or wildcard condition that would let the client choose another key or type.
    assert not [c for c in conditions if isinstance(c, list) and c[0] == "starts-with"]

    expiration = _parse_iso(policy["expiration"])
    window = timedelta(seconds=900)
    assert (
        before + window - timedelta(seconds=1)
        <= expiration
        <= after + window + timedelta(seconds=1)
    )
    assert abs(_parse_iso(body["expires_at"]) - expiration) <= timedelta(seconds=1)


def test_item_is_pending_upload_with_the_declared_file(
    call: Call, dynamodb: Any, settings: Settings
) -> None:
    status, _, body = call("POST", "/uploads", body={**JPEG, "album": "Summer"})
    assert status == 201

    item = _stored(dynamodb, settings, body["media_id"])
    assert item["owner"] == {"S": "alice"}
    assert item["status"] == {"S": "PENDING_UPLOAD"}
    assert item["filename"] == {"S": "holiday.jpg"}
    assert item["content_type"] == {"S": "image/jpeg"}
    assert item["size"] == {"N": "2048"}
    assert item["album"] == {"S": "Summer"}
    assert item["source"] == {
        "M": {
            "bucket": {"S": settings.originals_bucket},
            "key": {"S": f"originals/{body['media_id']}"},
        }
    }
    # The table's TTL attribute, epoch seconds: a day after the POST policy expires.
    expires = _parse_iso(body["expires_at"]) + timedelta(days=1)
    assert item["upload_expires_at"] == {"N": str(math.ceil(expires.timestamp()))}
    assert item["created_at"] == item["updated_at"]
    assert item["created_at"]["S"].endswith("Z")


def test_album_is_stored_only_when_given(call: Call, dynamodb: Any, settings: Settings) -> None:
    _, _, body = call("POST", "/uploads", body=JPEG)
    assert "album" not in _stored(dynamodb, settings, body["media_id"])


def test_content_type_is_lowercased_and_parameters_stripped(
    call: Call, dynamodb: Any, settings: Settings
) -> None:
    status, _, body = call(
        "POST", "/uploads", body={**JPEG, "content_type": "Image/JPEG; charset=binary"}
    )
    assert status == 201
    assert body["upload"]["fields"]["Content-Type"] == "image/jpeg"
    assert {"Content-Type": "image/jpeg"} in _policy(body["upload"]["fields"])["conditions"]
    assert _stored(dynamodb, settings, body["media_id"])["content_type"] == {"S": "image/jpeg"}


@pytest.mark.parametrize(
    ("filename", "stored"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\IMG_0001.JPG", "IMG_0001.JPG"),
        ("/abs/dir/clip.mp4", "clip.mp4"),
    ],
)
def test_a_path_in_the_filename_is_metadata_only(
    call: Call, dynamodb: Any, settings: Settings, filename: str, stored: str
) -> None:
    status, _, body = call("POST", "/uploads", body={**JPEG, "filename": filename})
    assert status == 201
    key = f"originals/{body['media_id']}"
    assert body["upload"]["fields"]["key"] == key
    item = _stored(dynamodb, settings, body["media_id"])
    assert item["filename"] == {"S": stored}
    assert item["source"]["M"]["key"] == {"S": key}


def test_base64_encoded_body_is_decoded(call: Call) -> None:
    status, _, body = call("POST", "/uploads", body=JPEG, base64_body=True)
    assert status == 201
    assert is_media_id(body["media_id"])


_TOO_BIG = load_settings().max_upload_bytes + 1


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param({}, "filename: is required", id="missing-fields"),
        pytest.param({"filename": "a.jpg", "size": 1}, "content_type: is required", id="no-type"),
        pytest.param({**JPEG, "owner": "bob"}, "owner: is not an accepted field", id="unknown"),
        pytest.param({**JPEG, "key": "x"}, "key: is not an accepted field", id="client-key"),
        pytest.param({**JPEG, "content_type": "application/zip"}, "image/jpeg", id="zip"),
        pytest.param({**JPEG, "content_type": "image/svg+xml"}, "not accepted", id="svg"),
        pytest.param({**JPEG, "content_type": "text/html"}, "not accepted", id="html"),
        pytest.param({**JPEG, "content_type": ""}, "content_type", id="empty-type"),
        pytest.param({**JPEG, "content_type": 5}, "content_type: must be a string", id="type-int"),
        pytest.param({**JPEG, "size": 0}, "size: must be at least 1 byte", id="size-0"),
        pytest.param({**JPEG, "size": -5}, "size: must be at least 1 byte", id="negative"),
        pytest.param({**JPEG, "size": True}, "size: must be an integer", id="bool"),
        pytest.param({**JPEG, "size": 10.0}, "size: must be an integer", id="float-whole"),
        pytest.param({**JPEG, "size": 1.5}, "size: must be an integer", id="float"),
        pytest.param({**JPEG, "size": "2048"}, "size: must be an integer", id="string"),
        pytest.param({**JPEG, "size": None}, "size: must be an integer", id="null"),
        pytest.param({**JPEG, "size": _TOO_BIG}, "exceeds the limit", id="over-limit"),
        pytest.param({**JPEG, "filename": "a\x00.jpg"}, "control characters", id="nul"),
        pytest.param({**JPEG, "filename": "a\nb.jpg"}, "control characters", id="newline"),
        pytest.param({**JPEG, "filename": "a\x7f.jpg"}, "control characters", id="del"),
        pytest.param({**JPEG, "filename": "x\u202egpj.exe"}, "control characters", id="bidi"),
        pytest.param({**JPEG, "filename": "a" * 4000}, "at most 255", id="4000-chars"),
        pytest.param({**JPEG, "filename": ""}, "filename", id="empty-name"),
        pytest.param({**JPEG, "filename": "photos/"}, "must end with a file name", id="dir"),
        pytest.param({**JPEG, "filename": "../.."}, "must end with a file name", id="dotdot"),
        pytest.param({**JPEG, "filename": ["a.jpg"]}, "filename: must be a string", id="list"),
        pytest.param({**JPEG, "album": ""}, "album", id="empty-album"),
        pytest.param({**JPEG, "album": "x" * 129}, "at most 128", id="long-album"),
        pytest.param({**JPEG, "album": "a\tb"}, "control characters", id="album-tab"),
    ],
)
def test_invalid_declaration_is_400_with_reason_and_writes_nothing(
    call: Call, dynamodb: Any, settings: Settings, payload: dict[str, Any], reason: str
) -> None:
    status, _, body = call("POST", "/uploads", body=payload)
    assert status == 400
    assert body["error"]["code"] == "invalid_request"
    assert reason in body["error"]["message"]
    assert _item_count(dynamodb, settings) == 0


def test_lone_surrogate_in_filename_is_400(call: Call) -> None:
    # json.loads turns "\ud800" into a lone surrogate, which cannot be stored as UTF-8.
    raw = json.dumps(JPEG).replace("holiday", "holi\\ud800day")
    status, _, body = call("POST", "/uploads", raw_body=raw)
    assert status == 400
    assert body["error"]["message"] == "filename: must be valid Unicode text"


def test_every_wrong_field_is_named(call: Call) -> None:
    payload = {"filename": "a\x00", "content_type": "text/html", "size": 0}
    _, _, body = call("POST", "/uploads", body=payload)
    message = body["error"]["message"]
    assert "filename:" in message
    assert "content_type:" in message
    assert "size:" in message


def test_refused_type_reason_lists_what_is_accepted(call: Call, settings: Settings) -> None:
    _, _, body = call("POST", "/uploads", body={**JPEG, "content_type": "image/svg+xml"})
    for accepted in settings.allowed_content_types:
        assert accepted in body["error"]["message"]


@pytest.mark.parametrize(
    "raw_body",
    [
        pytest.param("{not json", id="not-json"),
        pytest.param('[{"filename": "a.jpg"}]', id="array"),
        pytest.param('"a string"', id="string"),
        pytest.param("", id="empty"),
        pytest.param("[" * 100_000 + "]" * 100_000, id="nested-too-deep"),
    ],
)
def test_body_that_is_not_a_json_object_is_400(
    call: Call, dynamodb: Any, settings: Settings, raw_body: str
) -> None:
    status, _, body = call("POST", "/uploads", raw_body=raw_body)
    assert status == 400
    assert body["error"] == {"code": "invalid_json", "message": "the body must be a JSON object"}
    assert _item_count(dynamodb, settings) == 0


def test_invalid_base64_body_is_400(api: MediaApi, make_event: Any) -> None:
    event = make_event("POST", "/uploads", raw_body="%%%not base64%%%")
    event["isBase64Encoded"] = True
    answer = api(event, None)
    assert answer["statusCode"] == 400
    assert json.loads(answer["body"])["error"]["code"] == "invalid_json"


def test_limits_come_from_settings(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, make_event: Any
) -> None:
    monkeypatch.setenv("MEDIAMILL_MAX_UPLOAD_BYTES", "1000")
    monkeypatch.setenv("MEDIAMILL_ALLOWED_CONTENT_TYPES", "image/png,video/mp4")
    api = MediaApi.from_settings(load_settings())

    def status(payload: dict[str, Any]) -> int:
        return api(make_event("POST", "/uploads", body=payload), None)["statusCode"]

    png = {"filename": "a.png", "content_type": "image/png"}
    assert status({**png, "size": 1000}) == 201
    assert status({**png, "size": 1001}) == 400
    assert status({**png, "content_type": "image/jpeg", "size": 10}) == 400


async def test_upload_through_the_presigned_post_lands_at_the_key(
    call: Call, s3: Any, settings: Settings
) -> None:
    data = bytes(range(256)) * 8
    _, _, body = call("POST", "/uploads", body={**JPEG, "size": len(data)})
    upload = body["upload"]

    form = aiohttp.FormData()
    for name, value in upload["fields"].items():
        form.add_field(name, value)
    # S3 reads fields up to the file part: the file must come last.
    form.add_field("file", data, filename="holiday.jpg", content_type="image/jpeg")
    async with aiohttp.ClientSession() as session, session.post(upload["url"], data=form) as resp:
        assert resp.status in (200, 201, 204), await resp.text()

    stored = s3.get_object(Bucket=settings.originals_bucket, Key=f"originals/{body['media_id']}")
    assert stored["Body"].read() == data
    assert stored["ContentType"] == "image/jpeg"
