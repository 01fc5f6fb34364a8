"""Uploads declared but not received: they expire (TTL), and each owner has caps on them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api_lambda.app import MediaApi
from api_lambda.clients import s3_client
from api_lambda.pending import PENDING_GRACE
from mediamill_core.settings import Settings, load_settings
from mediamill_testkit.client import raw_item
from worker.store import ClaimOutcome

Call = Callable[..., tuple[int, dict[str, str], Any]]
Claim = Callable[..., ClaimOutcome]
JPEG = {"filename": "holiday.jpg", "content_type": "image/jpeg", "size": 1000}
BIG = {"filename": "clip.mp4", "content_type": "video/mp4", "size": 6 * 1024**2}
GRACE = int(PENDING_GRACE.total_seconds())


@pytest.fixture
def limited(settings: Settings, monkeypatch: pytest.MonkeyPatch, send: Callable[..., Any]) -> Call:
    """The API with caps of 3 open uploads and 10,000 bytes pending, multipart above 1 KiB."""
    monkeypatch.setenv("MEDIAMILL_MAX_OPEN_UPLOADS", "3")
    monkeypatch.setenv("MEDIAMILL_MAX_PENDING_BYTES", str(10 * 1024**2))
    monkeypatch.setenv("MEDIAMILL_MULTIPART_THRESHOLD_BYTES", "1024")
    api = MediaApi.from_settings(load_settings())

    def call(method: str, path: str, **kwargs: Any) -> Any:
        return send(api, method, path, **kwargs)

    return call


def _create(call: Call, body: dict[str, Any] = JPEG, sub: str = "alice") -> str:
    status, _, created = call("POST", "/uploads", body=body, sub=sub)
    assert status == 201, created
    return str(created["media_id"])


def _set_expiry(dynamodb: Any, settings: Settings, media_id: str, value: dict[str, str]) -> None:
    """What the item's TTL attribute says, as if time had passed (moto never sweeps)."""
    dynamodb.update_item(
        TableName=settings.table,
        Key={"media_id": {"S": media_id}},
        UpdateExpression="SET upload_expires_at = :at",
        ExpressionAttributeValues={":at": value},
    )


def _epoch(offset: float) -> dict[str, str]:
    return {"N": str(int(time.time() + offset))}


def _listed(call: Call, query: dict[str, str] | None = None, sub: str = "alice") -> list[str]:
    status, _, body = call("GET", "/media", query=query or {}, sub=sub)
    assert status == 200
    return [item["media_id"] for item in body["items"]]


# --- expiry ---------------------------------------------------------------------------------


def test_an_expired_upload_is_gone_to_get_list_and_patch_but_delete_removes_it(
    call: Call, dynamodb: Any, settings: Settings
) -> None:
    expired, kept = _create(call), _create(call)
    _set_expiry(dynamodb, settings, expired, _epoch(-1))
    before = raw_item(dynamodb, settings.table, expired)

    assert call("GET", f"/media/{expired}")[2] == {
        "error": {"code": "not_found", "message": "no such media"}
    }
    assert _listed(call) == [kept]
    assert _listed(call, {"status": "PENDING_UPLOAD"}) == [kept]
    assert call("PATCH", f"/media/{expired}", body={"title": "late"})[0] == 404
    assert raw_item(dynamodb, settings.table, expired) == before
    # A DELETE needs no sweep to wait for: it removes the item (and any original) at once.
    assert call("DELETE", f"/media/{expired}")[0] == 204
    assert raw_item(dynamodb, settings.table, expired) is None
    assert call("GET", f"/media/{kept}")[0] == 200


def test_an_expired_multipart_upload_can_be_neither_completed_nor_aborted(
    limited: Call, dynamodb: Any, settings: Settings
) -> None:
    media_id = _create(limited, BIG)
    _set_expiry(dynamodb, settings, media_id, _epoch(-1))
    parts = {"parts": [{"part_number": 1, "etag": "x"}, {"part_number": 2, "etag": "y"}]}
    assert limited("POST", f"/uploads/{media_id}/complete", body=parts)[0] == 404
    assert limited("DELETE", f"/uploads/{media_id}")[0] == 404


def test_past_its_urls_but_within_the_grace_an_upload_still_shows(
    call: Call, dynamodb: Any, settings: Settings
) -> None:
    media_id = _create(call)
    # The URLs expired an hour ago: bytes sent just before may still be on their way.
    _set_expiry(dynamodb, settings, media_id, _epoch(GRACE - 3600))
    assert call("GET", f"/media/{media_id}")[2]["status"] == "PENDING_UPLOAD"
    assert _listed(call) == [media_id]
    assert call("PATCH", f"/media/{media_id}", body={"title": "t"})[0] == 200


def test_only_pending_uploads_expire(
    call: Call, put_ready: Any, dynamodb: Any, settings: Settings
) -> None:
    ready, _ = put_ready(upload_expires_at=int(time.time()) - 10)
    legacy = _create(call)
    # Items from before the TTL held the expiry as text: DynamoDB's TTL ignores them, so do we.
    _set_expiry(dynamodb, settings, legacy, {"S": "2020-01-01T00:00:00.000Z"})
    assert call("GET", f"/media/{ready}")[0] == 200
    assert call("GET", f"/media/{legacy}")[0] == 200
    assert sorted(_listed(call)) == sorted([ready, legacy])
    assert call("POST", "/uploads", body=JPEG)[0] == 201  # and the caps read past them


def test_the_workers_claim_and_a_completed_multipart_upload_end_the_expiry(
    limited: Call, claim: Claim, dynamodb: Any, settings: Settings
) -> None:
    posted = _create(limited)
    assert "upload_expires_at" in raw_item(dynamodb, settings.table, posted)  # type: ignore[operator]
    assert claim(posted) is ClaimOutcome.CLAIMED
    claimed = raw_item(dynamodb, settings.table, posted)
    assert claimed is not None
    assert claimed["status"] == "PROCESSING"
    assert "upload_expires_at" not in claimed  # never swept, however long the job takes

    # Complete a real multipart upload: its bytes are in before any worker has seen it.
    status, _, created = limited("POST", "/uploads", body={**BIG, "size": 5 * 1024**2 + 10})
    assert status == 201
    media_id = created["media_id"]
    s3 = s3_client(load_settings())
    upload_id = raw_item(dynamodb, settings.table, media_id)["multipart"]["upload_id"]  # type: ignore[index]
    parts = [
        {
            "part_number": number,
            "etag": s3.upload_part(
                Bucket=settings.originals_bucket,
                Key=f"originals/{media_id}",
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
            )["ETag"],
        }
        for number, data in ((1, bytes(5 * 1024**2)), (2, bytes(10)))
    ]
    status, _, body = limited("POST", f"/uploads/{media_id}/complete", body={"parts": parts})
    assert status == 200, body
    done = raw_item(dynamodb, settings.table, media_id)
    assert done is not None
    assert done["status"] == "PENDING_UPLOAD"
    assert "upload_expires_at" not in done


# --- caps -----------------------------------------------------------------------------------


def test_the_open_upload_cap_is_a_429_naming_the_limit(
    limited: Call, dynamodb: Any, settings: Settings, s3: Any
) -> None:
    ids = [_create(limited), _create(limited), _create(limited, BIG)]
    before = dynamodb.scan(TableName=settings.table, Select="COUNT")["Count"]

    status, headers, body = limited("POST", "/uploads", body=BIG)

    assert status == 429
    assert body["error"]["code"] == "too_many_open_uploads"
    assert body["error"]["message"].startswith(
        "3 uploads are open, the limit of open uploads is 3; "
    )
    # The first open upload's POST policy expires in 15 minutes: worth trying again then.
    assert 890 <= int(headers["retry-after"]) <= 901
    assert dynamodb.scan(TableName=settings.table, Select="COUNT")["Count"] == before
    assert len(s3.list_multipart_uploads(Bucket=settings.originals_bucket)["Uploads"]) == 1
    # Per owner: someone else is not held back.
    assert limited("POST", "/uploads", body=JPEG, sub="bob")[0] == 201
    # Deleting one makes room.
    assert limited("DELETE", f"/media/{ids[0]}")[0] == 204
    assert limited("POST", "/uploads", body=JPEG)[0] == 201
    assert limited("POST", "/uploads", body=JPEG)[0] == 429


@pytest.mark.parametrize("end", ["claimed", "expired", "urls-expired"])
def test_an_upload_stops_counting_once_received_or_its_urls_expire(
    limited: Call, claim: Claim, dynamodb: Any, settings: Settings, end: str
) -> None:
    ids = [_create(limited) for _ in range(3)]
    assert limited("POST", "/uploads", body=JPEG)[0] == 429
    if end == "claimed":
        assert claim(ids[0]) is ClaimOutcome.CLAIMED
    else:
        _set_expiry(dynamodb, settings, ids[0], _epoch(-1 if end == "expired" else GRACE - 1))
    assert limited("POST", "/uploads", body=JPEG)[0] == 201


def test_the_pending_bytes_cap_is_a_429_and_a_bigger_upload_a_400(limited: Call) -> None:
    limit = 10 * 1024**2
    _create(limited, {**BIG, "size": 6 * 1024**2})

    status, headers, body = limited("POST", "/uploads", body={**BIG, "size": 4 * 1024**2 + 1})
    assert status == 429
    assert body["error"]["code"] == "too_many_pending_bytes"
    assert body["error"]["message"].startswith(
        f"{6 * 1024**2} bytes are pending in open uploads; {4 * 1024**2 + 1} more would pass "
        f"the limit of pending bytes, {limit}; "
    )
    assert int(headers["retry-after"]) > 0

    _create(limited, {**BIG, "size": 4 * 1024**2})  # exactly up to the limit
    assert limited("POST", "/uploads", body={**JPEG, "size": 1})[0] == 429
    # Bigger than any owner may have pending: no retry could help, so it is not a 429.
    status, _, body = limited("POST", "/uploads", body={**BIG, "size": limit + 1}, sub="bob")
    assert status == 400
    assert f"exceeds the limit of {limit} bytes" in body["error"]["message"]


def test_the_caps_read_one_bounded_projected_query_of_the_owner_index(
    settings: Settings, recording_api: Any, send: Callable[..., Any]
) -> None:
    api, requests = recording_api
    before = datetime.now(UTC)

    status, _, _ = send(api, "POST", "/uploads", body=JPEG)

    assert status == 201
    assert [name for name, _ in requests] == ["Query", "PutItem"]
    query = requests[0][1]
    assert query["IndexName"] == "by-owner"
    assert query["KeyConditionExpression"] == "#owner = :owner AND created_at >= :since"
    values = query["ExpressionAttributeValues"]
    assert values[":owner"] == {"S": "alice"}
    # Only items young enough to have valid URLs: the longest lifetime is the multipart one.
    since = datetime.fromisoformat(values[":since"]["S"].replace("Z", "+00:00"))
    window = timedelta(seconds=settings.multipart_expiry_seconds)
    assert before - window - timedelta(seconds=1) <= since <= before - window + timedelta(seconds=5)
    assert query["ProjectionExpression"] == "#size, upload_expires_at"
    assert "Limit" not in query
    assert json.dumps(query).count("Scan") == 0
