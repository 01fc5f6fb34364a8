"""GET /media: newest first, an opaque cursor, filters, bounds, and only the caller's items."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from api_lambda import listing
from api_lambda.cursor import encode_cursor
from mediamill_core.keys import new_media_id
from mediamill_core.settings import Settings

Call = Callable[..., tuple[int, dict[str, str], Any]]


def _stamp(n: int) -> str:
    return f"2024-01-01T00:{n // 60:02d}:{n % 60:02d}.000Z"


@pytest.fixture
def put_plain(dynamodb: Any, settings: Settings) -> Callable[..., str]:
    """A bare item (no S3 objects), created at second ``n``."""

    def put(n: int, owner: str = "alice", **values: str) -> str:
        media_id = new_media_id()
        item = {
            "media_id": media_id,
            "owner": owner,
            "status": "READY",
            "kind": "image",
            "created_at": _stamp(n),
            **values,
        }
        dynamodb.put_item(TableName=settings.table, Item={k: {"S": v} for k, v in item.items()})
        return media_id

    return put


def _all_pages(call: Call, query: dict[str, str], sub: str = "alice") -> list[list[str]]:
    pages, cursor = [], None
    for _ in range(50):
        params = {**query, **({"cursor": cursor} if cursor else {})}
        status, _, body = call("GET", "/media", query=params, sub=sub)
        assert status == 200, body
        pages.append([item["media_id"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError("the listing never ended")


def test_newest_first_in_pages_without_gaps_or_repeats(
    call: Call, put_plain: Callable[..., str]
) -> None:
    ids = [put_plain(n) for n in range(7)]
    put_plain(3, owner="bob")

    pages = _all_pages(call, {"limit": "3"})

    assert pages[:3] == [ids[6:3:-1], ids[3:0:-1], ids[0:1]]
    assert [media_id for page in pages for media_id in page] == ids[::-1]


def test_default_page_is_50_and_the_last_page_has_no_cursor(
    call: Call, put_plain: Callable[..., str]
) -> None:
    ids = [put_plain(n) for n in range(51)]
    _, _, first = call("GET", "/media")
    assert len(first["items"]) == listing.DEFAULT_LIMIT == 50
    _, _, second = call("GET", "/media", query={"cursor": first["next_cursor"]})
    assert [item["media_id"] for item in second["items"]] == [ids[0]]
    assert second["next_cursor"] is None


def test_items_are_the_full_view_with_rendition_urls(call: Call, put_ready: Any) -> None:
    media_id, files = put_ready()
    _, _, body = call("GET", "/media")
    [item] = body["items"]
    assert item["media_id"] == media_id
    assert set(item["renditions"]) == set(files)
    assert "owner" not in item
    assert "source" not in item


def test_filters_by_album_kind_and_status(call: Call, put_plain: Callable[..., str]) -> None:
    summer = put_plain(1, album="Summer")
    video = put_plain(2, album="Summer", kind="video")
    failed = put_plain(3, status="FAILED")
    put_plain(4, album="Winter")
    put_plain(5, owner="bob", album="Summer")

    def ids(query: dict[str, str]) -> list[str]:
        return [media_id for page in _all_pages(call, query) for media_id in page]

    assert ids({"album": "Summer"}) == [video, summer]
    assert ids({"album": "Summer", "kind": "image"}) == [summer]
    assert ids({"kind": "video"}) == [video]
    assert ids({"status": "FAILED"}) == [failed]
    assert ids({"album": "Nowhere"}) == []


def test_a_sparse_filter_gives_short_pages_and_still_finds_everything(
    call: Call, put_plain: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Few reads per request, so the limit of queries is what ends a page.
    monkeypatch.setattr(listing, "MAX_QUERIES", 2)
    monkeypatch.setattr(listing, "_FILTERED_READ", 2)
    oldest = put_plain(0, album="Rare")
    for n in range(1, 10):
        put_plain(n)
    newest = put_plain(10, album="Rare")

    pages = _all_pages(call, {"album": "Rare", "limit": "5"})

    assert pages[0] == [newest]  # short: four items read, one matched
    assert [] in pages  # some requests found nothing, yet handed on a cursor
    assert [media_id for page in pages for media_id in page] == [newest, oldest]


def test_items_being_deleted_are_not_listed(call: Call, put_plain: Callable[..., str]) -> None:
    kept = put_plain(1)
    put_plain(2, status="DELETING")
    assert _all_pages(call, {}) == [[kept]]
    assert call("GET", "/media", query={"status": "DELETING"})[0] == 400


def test_listing_is_a_query_on_the_owner_index_never_a_scan(
    recording_api: Any, put_plain: Callable[..., str], send: Callable[..., Any]
) -> None:
    put_plain(1)
    api, requests = recording_api
    status, _, _ = send(api, "GET", "/media", query={"album": "x"})
    assert status == 200
    assert [name for name, _ in requests] == ["Query"]
    [(_, params)] = requests
    assert params["IndexName"] == "by-owner"
    assert params["ScanIndexForward"] is False
    assert params["ExpressionAttributeValues"][":owner"] == {"S": "alice"}


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit: must be an integer"),
        ({"kind": "audio"}, "kind"),
        ({"status": "ready"}, "status"),
        ({"album": "a\x00b"}, "control characters"),
        ({"album": "x" * 129}, "album"),
        ({"owner": "bob"}, "owner: is not an accepted field"),
    ],
)
def test_bad_query_is_400_with_reason(call: Call, query: dict[str, str], reason: str) -> None:
    status, _, body = call("GET", "/media", query=query)
    assert status == 400
    assert reason in body["error"]["message"]


def _cursor(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_cursor_of_another_owner_is_400_and_reads_nothing(
    call: Call, put_plain: Callable[..., str]
) -> None:
    put_plain(1, owner="bob")
    _, _, bobs = call("GET", "/media", query={"limit": "1"}, sub="bob")
    assert bobs["items"]
    # A cursor bob was given, or one forged with his owner in it: both refused for mallory.
    forged = encode_cursor({"media_id": new_media_id(), "owner": "bob", "created_at": _stamp(9)})
    for cursor in (bobs["next_cursor"] or forged, forged):
        status, _, body = call("GET", "/media", query={"cursor": cursor}, sub="mallory")
        assert status == 400
        assert body["error"]["code"] == "invalid_cursor"
        assert "items" not in body


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64!",
        _cursor(["a"]),
        _cursor({"media_id": "x", "owner": "alice", "created_at": "2024"}),
        _cursor({"media_id": "0" * 32, "owner": "alice"}),
        _cursor({"media_id": "0" * 32, "owner": "alice", "created_at": 5}),
        _cursor({"media_id": "0" * 32, "owner": "alice", "created_at": "t", "extra": "x"}),
        _cursor({"media_id": "0" * 32, "owner": "alice", "created_at": ""}),
        _cursor({"media_id": "0" * 32, "owner": "alice", "created_at": "t"}),
        _cursor({"media_id": "0" * 32, "owner": "alice", "created_at": "2024-13-45T99:00:00.000Z"}),
        _cursor({"media_id": "0" * 32, "owner": "alice", "created_at": "2024-01-01"}),
        _cursor({"media_id": "0" * 32, "owner": "alice", "created_at": "2024-01-01T00:00:00Z"}),
        _cursor({"media_id": "0" * 32, "owner": "", "created_at": _stamp(1)}),
        _cursor({"media_id": "", "owner": "alice", "created_at": _stamp(1)}),
        _cursor({"media_id": None, "owner": "alice", "created_at": _stamp(1)}),
        _cursor(None),
        _cursor(""),
        base64.urlsafe_b64encode(b"\xff\xfe not utf-8").decode(),
        "",
        "A" * 600,
        "A" * 5000,
    ],
)
def test_a_malformed_cursor_is_400(call: Call, put_plain: Callable[..., str], cursor: str) -> None:
    # Items to page through, so a cursor that slipped past the checks would reach DynamoDB.
    put_plain(1)
    status, _, body = call("GET", "/media", query={"cursor": cursor})
    assert status == 400
    assert body["error"]["code"] in ("invalid_cursor", "invalid_request")
    if cursor:  # an empty value is refused by the query's own validation
        assert body["error"]["code"] == "invalid_cursor"


def test_a_cursor_for_the_longest_owner_round_trips(
    call: Call, put_plain: Callable[..., str]
) -> None:
    owner = "\u00e9" * 127 + '"'  # 255 bytes of UTF-8, every character escaped in JSON
    ids = [put_plain(n, owner=owner) for n in range(3)]
    pages = _all_pages(call, {"limit": "1"}, sub=owner)
    assert [media_id for page in pages for media_id in page] == ids[::-1]


def test_the_cursor_is_opaque_text(call: Call, put_plain: Callable[..., str]) -> None:
    put_plain(1)
    put_plain(2)
    _, _, body = call("GET", "/media", query={"limit": "1"})
    assert body["next_cursor"].isascii()
    assert "=" not in body["next_cursor"]
    assert "/" not in body["next_cursor"]
