"""Another user's media is a 404 on every route, and the attempt changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from api_lambda.app import MediaApi
from mediamill_core.settings import Settings, load_settings
from mediamill_testkit.client import raw_item

Call = Callable[..., tuple[int, dict[str, str], Any]]
BIG = {"filename": "clip.mp4", "content_type": "video/mp4", "size": 6 * 1024**2}
PARTS = {"parts": [{"part_number": 1, "etag": "x"}, {"part_number": 2, "etag": "y"}]}


@pytest.fixture
def api(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> MediaApi:
    monkeypatch.setenv("MEDIAMILL_MULTIPART_THRESHOLD_BYTES", "1024")
    return MediaApi.from_settings(load_settings())


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "/media/{id}", None),
        ("PATCH", "/media/{id}", {"title": "mine now"}),
        ("DELETE", "/media/{id}", None),
        ("POST", "/uploads/{id}/complete", PARTS),
        ("DELETE", "/uploads/{id}", None),
    ],
)
def test_another_users_media_is_404_everywhere_and_untouched(
    call: Call,
    s3: Any,
    dynamodb: Any,
    settings: Settings,
    method: str,
    suffix: str,
    body: Any,
) -> None:
    status, _, created = call("POST", "/uploads", body=BIG, sub="alice")
    assert status == 201
    media_id = created["media_id"]
    s3.put_object(Bucket=settings.renditions_bucket, Key=f"{media_id}/thumb.webp", Body=b"x")
    before = raw_item(dynamodb, settings.table, media_id)
    path = suffix.format(id=media_id)

    status, _, answer = call(method, path, body=body, sub="mallory")

    assert status == 404
    assert answer == {"error": {"code": "not_found", "message": "no such media"}}
    assert raw_item(dynamodb, settings.table, media_id) == before
    assert s3.list_objects_v2(Bucket=settings.renditions_bucket)["KeyCount"] == 1
    [upload] = s3.list_multipart_uploads(Bucket=settings.originals_bucket)["Uploads"]
    assert upload["UploadId"] == before["multipart"]["upload_id"]  # type: ignore[index]
    # The owner still can.
    assert call("GET", f"/media/{media_id}", sub="alice")[0] == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/media"),
        ("GET", "/media/{id}"),
        ("PATCH", "/media/{id}"),
        ("DELETE", "/media/{id}"),
        ("POST", "/uploads"),
        ("POST", "/uploads/{id}/complete"),
        ("DELETE", "/uploads/{id}"),
        ("GET", "/no/such/route"),
    ],
)
def test_every_route_but_the_document_needs_a_caller(call: Call, method: str, path: str) -> None:
    status, headers, body = call(method, path.format(id="0" * 32), body={}, sub=None)
    assert status == 401
    assert headers["www-authenticate"] == "Bearer"
    assert body["error"]["code"] == "unauthorized"
