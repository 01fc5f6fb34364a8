"""Routing, the caller, error bodies and GET /media/{id}."""

from __future__ import annotations

import json
import logging
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from api_lambda.app import MediaApi
from mediamill_core.keys import new_media_id
from mediamill_core.settings import Settings, load_settings

Call = Callable[..., tuple[int, dict[str, str], Any]]
JPEG = {"filename": "holiday.jpg", "content_type": "image/jpeg", "size": 2048}


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as answer:  # loopback moto server
        return answer.read()


def _upload(call: Call, sub: str = "alice") -> str:
    status, _, body = call("POST", "/uploads", body=JPEG, sub=sub)
    assert status == 201
    return body["media_id"]


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param(None, id="no-authorizer"),
        pytest.param({}, id="no-sub"),
        pytest.param({"sub": ""}, id="empty-sub"),
        pytest.param({"email": "alice@example.com"}, id="other-claims-only"),
    ],
)
@pytest.mark.parametrize(("method", "path"), [("POST", "/uploads"), ("GET", "/media/x")])
def test_without_a_sub_claim_is_401(
    api: MediaApi, make_event: Any, claims: dict[str, str] | None, method: str, path: str
) -> None:
    event = make_event(method, path, body=JPEG if method == "POST" else None, sub=None)
    if claims is not None:
        event["requestContext"]["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    answer = api(event, None)
    assert answer["statusCode"] == 401
    assert answer["headers"]["www-authenticate"].startswith("Bearer")
    assert json.loads(answer["body"])["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    "path",
    ["/", "/nope", "/media/", "/uploads/", "/uploads/x/y", "/media/a/b", "/uploads\n", "/openapi"],
)
def test_unknown_route_is_404(call: Call, path: str) -> None:
    status, _, body = call("GET", path)
    assert status == 404
    assert body["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/uploads", "POST"),
        ("PUT", "/uploads", "POST"),
        ("PUT", "/media/abc", "DELETE, GET, PATCH"),
        ("GET", "/uploads/abc", "DELETE"),
        ("GET", "/uploads/abc/complete", "POST"),
        ("POST", "/media", "GET"),
    ],
)
def test_known_path_with_wrong_method_is_405(
    call: Call, method: str, path: str, allow: str
) -> None:
    status, headers, body = call(method, path)
    assert status == 405
    assert headers["allow"] == allow
    assert body["error"]["code"] == "method_not_allowed"


def test_named_stage_prefix_is_not_part_of_the_route(call: Call) -> None:
    status, _, _ = call("POST", "/prod/uploads", body=JPEG, stage="prod")
    assert status == 201
    status, _, _ = call("POST", "/prod/uploads", body=JPEG)
    assert status == 404


def test_answers_are_json_and_not_cacheable(call: Call) -> None:
    for status, headers, _ in (call("POST", "/uploads", body=JPEG), call("GET", "/nope")):
        assert headers["content-type"] == "application/json"
        assert headers["cache-control"] == "no-store"
        assert status in (201, 404)


def test_500_hides_internals_and_logs_the_exception(
    settings: Settings, make_event: Any, caplog: pytest.LogCaptureFixture
) -> None:
    broken = MediaApi.from_settings(load_settings(table="no-such-table-here"))
    with caplog.at_level(logging.ERROR, logger="api_lambda.app"):
        answer = broken(make_event("POST", "/uploads", body=JPEG), None)

    assert answer["statusCode"] == 500
    assert json.loads(answer["body"]) == {
        "error": {"code": "internal_error", "message": "internal error"}
    }
    assert "no-such-table-here" not in answer["body"]
    [record] = [r for r in caplog.records if r.name == "api_lambda.app"]
    assert record.exc_info is not None
    assert "ResourceNotFoundException" in repr(record.exc_info[1])
    assert "test-request" in record.getMessage()


def test_owner_reads_a_pending_upload(call: Call) -> None:
    media_id = _upload(call)
    status, _, body = call("GET", f"/media/{media_id}")
    assert status == 200
    assert body["media_id"] == media_id
    assert body["status"] == "PENDING_UPLOAD"
    assert body["filename"] == "holiday.jpg"
    assert body["size"] == 2048
    assert body["renditions"] == {}
    assert "owner" not in body
    assert "source" not in body


def test_others_media_missing_and_malformed_ids_get_the_same_404(call: Call) -> None:
    media_id = _upload(call, sub="alice")
    answers = [
        call("GET", f"/media/{media_id}", sub="mallory"),
        call("GET", f"/media/{new_media_id()}"),
        call("GET", "/media/not-an-id"),
        call("GET", f"/media/{media_id.upper()}"),
        call("GET", f"/media/{media_id}0"),
        call("GET", "/media/%2e%2e"),
    ]
    for status, _, body in answers:
        assert status == 404
        assert body == answers[0][2]
    assert answers[0][2] == {"error": {"code": "not_found", "message": "no such media"}}


def test_ready_item_has_working_rendition_urls_and_plain_json_numbers(
    api: MediaApi, make_event: Any, put_ready: Any, settings: Settings
) -> None:
    media_id, files = put_ready(owner="alice")

    answer = api(make_event("GET", f"/media/{media_id}"), None)
    assert answer["statusCode"] == 200
    # Decimal would not serialise: the body must be plain JSON with ints and floats.
    body = json.loads(answer["body"])

    assert set(body) == {
        "media_id",
        "status",
        "kind",
        "filename",
        "content_type",
        "size",
        "album",
        "title",
        "description",
        "created_at",
        "updated_at",
        "metadata",
        "location",
        "renditions",
        "stages",
        "warnings",
        "error",
    }
    assert body["status"] == "READY"
    assert body["kind"] == "image"
    assert body["size"] == 4_000_000
    assert body["metadata"] == {"camera": "Pixel", "exposure": 0.008, "iso": 100}
    assert isinstance(body["metadata"]["iso"], int)
    assert body["location"] == {"lat": 48.8584, "lon": 2.2945}
    assert body["stages"][0] == {
        "name": "probe",
        "version": "1",
        "outcome": "ok",
        "seconds": 0.0123,
    }
    assert body["warnings"] == ["tagging skipped"]
    assert body["error"] is None

    assert set(body["renditions"]) == set(files)
    thumb = body["renditions"]["thumb"]
    assert (thumb["content_type"], thumb["width"], thumb["height"]) == ("image/webp", 250, 188)
    assert thumb["bytes"] == len(files["thumb"])
    for name, data in files.items():
        url = body["renditions"][name]["url"]
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        assert query["X-Amz-Expires"] == [str(settings.url_expiry_seconds)]
        assert settings.renditions_bucket in url
        assert _fetch(url) == data


def test_ready_item_of_another_owner_is_404(call: Call, put_ready: Any) -> None:
    media_id, _ = put_ready(owner="alice")
    status, _, body = call("GET", f"/media/{media_id}", sub="bob")
    assert status == 404
    assert "renditions" not in json.dumps(body)
