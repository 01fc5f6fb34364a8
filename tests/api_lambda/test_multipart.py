"""Large uploads: multipart above the threshold, presigned parts, complete and abort."""

from __future__ import annotations

import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from api_lambda.app import MediaApi
from api_lambda.multipart import MAX_PARTS, MIN_PART_BYTES, plan_parts
from mediamill_core.settings import S3_MULTIPART_MAX, Settings, load_settings
from mediamill_testkit.client import raw_item

Call = Callable[..., tuple[int, dict[str, str], Any]]
MIB = 1024**2
# Two parts: one of the 5 MiB minimum and a short last one.
SIZE = MIN_PART_BYTES + 1000
DATA = bytes(range(256)) * (SIZE // 256) + bytes(SIZE % 256)


@pytest.fixture
def big(settings: Settings, monkeypatch: pytest.MonkeyPatch, send: Callable[..., Any]) -> Call:
    """The API with a 1 KiB multipart threshold."""
    monkeypatch.setenv("MEDIAMILL_MULTIPART_THRESHOLD_BYTES", "1024")
    api = MediaApi.from_settings(load_settings())

    def call(method: str, path: str, **kwargs: Any) -> Any:
        return send(api, method, path, **kwargs)

    return call


def _declare(call: Call, size: int = SIZE, sub: str = "alice") -> dict[str, Any]:
    declared = {"filename": "clip.mp4", "content_type": "video/mp4", "size": size}
    status, _, body = call("POST", "/uploads", body=declared, sub=sub)
    assert status == 201, body
    return body


def _put(url: str, data: bytes) -> str:
    # urllib would label the body a form, which the server then tries to parse.
    request = urllib.request.Request(
        url, data=data, method="PUT", headers={"Content-Type": "application/octet-stream"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # loopback moto server
        return str(answer.headers["ETag"])


def _upload_parts(created: dict[str, Any], data: bytes = DATA) -> list[dict[str, Any]]:
    size = created["multipart"]["part_size"]
    return [
        {
            "part_number": part["part_number"],
            "etag": _put(part["url"], data[(part["part_number"] - 1) * size :][:size]),
        }
        for part in created["multipart"]["parts"]
    ]


@pytest.mark.parametrize(
    "size", [1, MIN_PART_BYTES, 100 * 1000**2, 5 * 1000**3, 77 * 1000**3 + 7, S3_MULTIPART_MAX]
)
def test_part_plan_fits_s3s_limits(size: int) -> None:
    plan = plan_parts(size)
    assert plan.part_size >= MIN_PART_BYTES
    assert plan.part_size % MIB == 0
    assert plan.part_size <= 5 * 1024**3
    assert 1 <= plan.part_count <= MAX_PARTS
    assert (plan.part_count - 1) * plan.part_size < size <= plan.part_count * plan.part_size


def test_at_or_below_the_threshold_is_one_presigned_post(big: Call) -> None:
    body = _declare(big, size=1024)
    assert "upload" in body
    assert "multipart" not in body


def test_above_the_threshold_starts_a_multipart_upload(
    big: Call, s3: Any, dynamodb: Any, settings: Settings
) -> None:
    body = _declare(big)
    media_id = body["media_id"]
    multipart = body["multipart"]
    assert "upload" not in body
    assert (multipart["part_size"], multipart["part_count"]) == (MIN_PART_BYTES, 2)
    assert [part["part_number"] for part in multipart["parts"]] == [1, 2]

    [upload] = s3.list_multipart_uploads(Bucket=settings.originals_bucket)["Uploads"]
    assert upload["Key"] == f"originals/{media_id}"
    item = raw_item(dynamodb, settings.table, media_id)
    assert item is not None
    assert item["status"] == "PENDING_UPLOAD"
    assert item["multipart"] == {
        "upload_id": upload["UploadId"],
        "part_size": MIN_PART_BYTES,
        "part_count": 2,
    }
    for part in multipart["parts"]:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(part["url"]).query)
        assert query["uploadId"] == [upload["UploadId"]]
        assert query["partNumber"] == [str(part["part_number"])]
        assert query["X-Amz-Expires"] == [str(settings.multipart_expiry_seconds)]
        assert urllib.parse.urlsplit(part["url"]).path.endswith(f"/originals/{media_id}")


def test_parts_then_complete_make_the_original(
    big: Call, s3: Any, dynamodb: Any, settings: Settings
) -> None:
    created = _declare(big)
    media_id = created["media_id"]
    parts = _upload_parts(created)

    status, _, body = big("POST", f"/uploads/{media_id}/complete", body={"parts": parts})

    assert status == 200, body
    assert body["media_id"] == media_id
    stored = s3.get_object(Bucket=settings.originals_bucket, Key=f"originals/{media_id}")
    assert stored["Body"].read() == DATA
    assert stored["ContentType"] == "video/mp4"
    item = raw_item(dynamodb, settings.table, media_id)
    assert item is not None
    assert "multipart" not in item
    # Done once: there is nothing left to complete or abort.
    again = big("POST", f"/uploads/{media_id}/complete", body={"parts": parts})
    assert again[0] == 409
    assert big("DELETE", f"/uploads/{media_id}")[0] == 409


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda parts: parts[:1], "list parts 1 to 2 in ascending order"),
        (lambda parts: parts[::-1], "list parts 1 to 2 in ascending order"),
        (lambda parts: [parts[0], parts[0]], "list parts 1 to 2 in ascending order"),
        (lambda parts: [parts[0], {**parts[1], "etag": '"0123"'}], "part 2: etag does not"),
        (lambda parts: [{**parts[0], "part_number": 0}, parts[1]], "parts.0.part_number"),
        (lambda parts: [{**parts[0], "etag": 5}, parts[1]], "must be a string"),
        (lambda parts: [], "parts"),
    ],
)
def test_a_wrong_part_list_is_400_with_reason_and_the_upload_stays_open(
    big: Call, s3: Any, settings: Settings, change: Any, reason: str
) -> None:
    created = _declare(big)
    parts = _upload_parts(created)

    status, _, body = big(
        "POST", f"/uploads/{created['media_id']}/complete", body={"parts": change(parts)}
    )

    assert status == 400
    assert reason in body["error"]["message"]
    assert len(s3.list_multipart_uploads(Bucket=settings.originals_bucket)["Uploads"]) == 1
    good = big("POST", f"/uploads/{created['media_id']}/complete", body={"parts": parts})
    assert good[0] == 200


def test_a_part_missing_or_of_the_wrong_size_is_named(big: Call) -> None:
    created = _declare(big)
    [first, second] = created["multipart"]["parts"]
    etag = _put(first["url"], DATA[:MIN_PART_BYTES])
    listed = [{"part_number": 1, "etag": etag}, {"part_number": 2, "etag": '"x"'}]
    path = f"/uploads/{created['media_id']}/complete"

    status, _, body = big("POST", path, body={"parts": listed})
    assert (status, body["error"]["code"]) == (400, "invalid_parts")
    assert "part 2 was not uploaded" in body["error"]["message"]

    # A last part larger than a part: far more than was declared.
    listed[1]["etag"] = _put(second["url"], bytes(MIN_PART_BYTES + 1))
    status, _, body = big("POST", path, body={"parts": listed})
    assert status == 400
    assert f"part 2 holds {MIN_PART_BYTES + 1} bytes" in body["error"]["message"]


@pytest.mark.parametrize(
    ("last_part", "held"),
    [
        pytest.param(DATA[MIN_PART_BYTES:-10], 990, id="short"),
        pytest.param(DATA[MIN_PART_BYTES:] + bytes(10), 1010, id="long"),
        pytest.param(b"x", 1, id="one-byte"),
    ],
)
def test_a_last_part_of_the_wrong_size_is_invalid_parts_and_the_upload_stays_open(
    big: Call, s3: Any, dynamodb: Any, settings: Settings, last_part: bytes, held: int
) -> None:
    created = _declare(big)
    media_id = created["media_id"]
    [first, second] = created["multipart"]["parts"]
    parts = [
        {"part_number": 1, "etag": _put(first["url"], DATA[:MIN_PART_BYTES])},
        {"part_number": 2, "etag": _put(second["url"], last_part)},
    ]
    path = f"/uploads/{media_id}/complete"

    status, _, body = big("POST", path, body={"parts": parts})

    assert (status, body["error"]["code"]) == (400, "invalid_parts")
    assert body["error"]["message"] == (
        f"parts: part 2 holds {held} bytes; the last part holds exactly 1000, the declared "
        f"{SIZE} bytes less 1 part(s) of {MIN_PART_BYTES}"
    )
    # Nothing completed or deleted: the client re-sends the last part and completes.
    assert "Contents" not in s3.list_objects_v2(Bucket=settings.originals_bucket)
    assert len(s3.list_multipart_uploads(Bucket=settings.originals_bucket)["Uploads"]) == 1
    assert raw_item(dynamodb, settings.table, media_id)["multipart"]  # type: ignore[index]
    parts[1]["etag"] = _put(second["url"], DATA[MIN_PART_BYTES:])
    status, _, body = big("POST", path, body={"parts": parts})
    assert status == 200, body
    stored = s3.get_object(Bucket=settings.originals_bucket, Key=f"originals/{media_id}")
    assert stored["Body"].read() == DATA


def test_a_full_part_of_the_wrong_size_is_named(big: Call) -> None:
    created = _declare(big, size=2 * MIN_PART_BYTES + 5)
    urls = [part["url"] for part in created["multipart"]["parts"]]
    parts = [
        {"part_number": 1, "etag": _put(urls[0], bytes(MIN_PART_BYTES))},
        {"part_number": 2, "etag": _put(urls[1], bytes(MIN_PART_BYTES + 5))},
        {"part_number": 3, "etag": _put(urls[2], bytes(MIN_PART_BYTES))},
    ]

    status, _, body = big("POST", f"/uploads/{created['media_id']}/complete", body={"parts": parts})

    assert (status, body["error"]["code"]) == (400, "invalid_parts")
    assert body["error"]["message"] == (
        f"parts: part 2 holds {MIN_PART_BYTES + 5} bytes; "
        f"every part but the last holds {MIN_PART_BYTES}"
    )


def test_abort_stops_the_upload_and_forgets_the_item(
    big: Call, s3: Any, dynamodb: Any, settings: Settings
) -> None:
    created = _declare(big)
    media_id = created["media_id"]
    _upload_parts(created)

    status, _, body = big("DELETE", f"/uploads/{media_id}")

    assert (status, body) == (204, None)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=settings.originals_bucket)
    assert raw_item(dynamodb, settings.table, media_id) is None
    assert big("DELETE", f"/uploads/{media_id}")[0] == 404


def test_complete_or_abort_of_a_single_post_upload_is_409(big: Call) -> None:
    media_id = _declare(big, size=10)["media_id"]
    status, _, body = big(
        "POST", f"/uploads/{media_id}/complete", body={"parts": [{"part_number": 1, "etag": "x"}]}
    )
    assert (status, body["error"]["code"]) == (409, "conflict")
    assert big("DELETE", f"/uploads/{media_id}")[0] == 409


def test_deleting_the_media_aborts_its_multipart_upload(
    big: Call, s3: Any, settings: Settings
) -> None:
    created = _declare(big)
    assert big("DELETE", f"/media/{created['media_id']}")[0] == 204
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=settings.originals_bucket)
