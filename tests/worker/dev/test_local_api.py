"""The local API Gateway stand-in: events, the JWT authorizer, answers, and end to end."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from multidict import CIMultiDict

from api_lambda.app import MediaApi
from mediamill_core.settings import Settings, load_settings
from worker.dev.local_api import MAX_BODY_BYTES, bearer_claims, dev_token, serve_api

Event = dict[str, Any]
FAR_FUTURE = 4_102_444_800  # 2100-01-01


class Recorder:
    """A stand-in Lambda function: keeps each event and answers with ``answer``."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.answer: Any = {"statusCode": 204, "headers": {}, "body": ""}

    def __call__(self, event: Event, context: Any) -> Any:
        self.events.append(event)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


# Async fixtures run on the test's own loop: a server or session must live on the loop using it.
@pytest_asyncio.fixture(loop_scope="function")
async def base_url(recorder: Recorder) -> AsyncIterator[str]:
    runner, url = await serve_api(recorder)
    yield url
    await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="function")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _segment(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _token(header: Any, payload: Any) -> str:
    def encode(data: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{encode(header)}.{encode(payload)}."


async def test_event_shape(base_url: str, http: aiohttp.ClientSession, recorder: Recorder) -> None:
    headers = CIMultiDict(
        [
            ("X-Trace", "one"),
            ("X-Trace", "two"),
            ("Cookie", "theme=dark; session=abc"),
            ("User-Agent", "mediamill-test/1"),
        ]
    )
    async with http.post(
        f"{base_url}/media/some%20thing?album=Summer&tag=a&tag=b&q=x%20y",
        json={"hello": "wörld"},
        headers=headers,
    ) as answer:
        assert answer.status == 204

    [event] = recorder.events
    assert event["version"] == "2.0"
    assert event["routeKey"] == "$default"
    assert event["rawPath"] == "/media/some%20thing"
    assert event["rawQueryString"] == "album=Summer&tag=a&tag=b&q=x%20y"
    assert event["queryStringParameters"] == {"album": "Summer", "tag": "a,b", "q": "x y"}
    assert event["headers"]["x-trace"] == "one,two"
    assert event["headers"]["content-type"] == "application/json"
    assert all(name == name.lower() for name in event["headers"])
    assert "cookie" not in event["headers"]
    assert event["cookies"] == ["theme=dark", "session=abc"]
    assert json.loads(event["body"]) == {"hello": "wörld"}
    assert event["isBase64Encoded"] is False

    context = event["requestContext"]
    assert context["http"] == {
        "method": "POST",
        "path": "/media/some thing",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "mediamill-test/1",
    }
    assert context["stage"] == "$default"
    assert context["routeKey"] == "$default"
    assert context["requestId"]
    assert context["domainName"] == base_url.removeprefix("http://")
    assert isinstance(context["timeEpoch"], int)
    assert context["time"].endswith(" +0000")
    assert "authorizer" not in context


async def test_request_ids_differ(
    base_url: str, http: aiohttp.ClientSession, recorder: Recorder
) -> None:
    for _ in range(2):
        async with http.get(f"{base_url}/x"):
            pass
    first, second = recorder.events
    assert first["requestContext"]["requestId"] != second["requestContext"]["requestId"]
    assert "body" not in first
    assert "queryStringParameters" not in first
    assert "cookies" not in first


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("image/jpeg", b"\xff\xd8\xff\xe0 binary \x00\x01"),
        ("application/octet-stream", b"plain ascii but declared binary"),
        ("text/plain", b"\xff\xfe not utf-8"),
    ],
)
async def test_binary_bodies_are_base64(
    base_url: str,
    http: aiohttp.ClientSession,
    recorder: Recorder,
    content_type: str,
    data: bytes,
) -> None:
    async with http.put(f"{base_url}/blob", data=data, headers={"Content-Type": content_type}):
        pass
    [event] = recorder.events
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == data


async def test_jwt_claims_pass_through_as_strings(
    base_url: str, http: aiohttp.ClientSession, recorder: Recorder
) -> None:
    token = dev_token(
        "alice", groups=["editors", "admins"], exp=FAR_FUTURE, email_verified=True, ratio=0.5
    )
    async with http.get(f"{base_url}/me", headers={"Authorization": f"Bearer {token}"}):
        pass
    [event] = recorder.events
    assert event["requestContext"]["authorizer"] == {
        "jwt": {
            "claims": {
                "sub": "alice",
                "groups": "[editors admins]",
                "exp": str(FAR_FUTURE),
                "email_verified": "true",
                "ratio": "0.5",
            },
            "scopes": None,
        }
    }
    assert event["headers"]["authorization"] == f"Bearer {token}"


async def test_other_schemes_pass_without_an_authorizer(
    base_url: str, http: aiohttp.ClientSession, recorder: Recorder
) -> None:
    async with http.get(f"{base_url}/me", headers={"Authorization": "Basic YTpi"}) as answer:
        assert answer.status == 204
    [event] = recorder.events
    assert "authorizer" not in event["requestContext"]


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("abc", id="one-part"),
        pytest.param("a.b", id="two-parts"),
        pytest.param("%%%.%%%.", id="not-base64url"),
        pytest.param("bm90IGpzb24.bm90IGpzb24.", id="not-json"),
        pytest.param(_token({"alg": "none"}, ["sub", "x"]), id="payload-not-object"),
        pytest.param(_token({"alg": "none"}, {"sub": "x", "exp": 1}), id="expired"),
    ],
)
async def test_malformed_token_is_401_from_the_adapter(
    base_url: str, http: aiohttp.ClientSession, recorder: Recorder, token: str
) -> None:
    async with http.get(f"{base_url}/me", headers={"Authorization": f"Bearer {token}"}) as answer:
        assert answer.status == 401
        assert answer.headers["Content-Type"] == "application/json"
        body = await answer.json()
        assert set(body) == {"error"}
        assert body["error"]["code"] == "unauthorized"
        assert body["error"]["message"].startswith("the bearer token is not valid: ")
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert recorder.events == []


async def test_a_body_over_the_limit_is_413_in_the_error_shape(
    base_url: str, http: aiohttp.ClientSession, recorder: Recorder
) -> None:
    async with http.post(
        f"{base_url}/uploads",
        data=bytes(MAX_BODY_BYTES + 1),
        headers={"Content-Type": "application/octet-stream"},
    ) as answer:
        assert answer.status == 413
        assert answer.headers["Content-Type"] == "application/json"
        assert await answer.json() == {
            "error": {
                "code": "payload_too_large",
                "message": f"the request body exceeds the API's limit of {MAX_BODY_BYTES} bytes",
            }
        }
    assert recorder.events == []
    # At the limit, the body goes through.
    async with http.post(f"{base_url}/uploads", data=bytes(MAX_BODY_BYTES)) as answer:
        assert answer.status == 204
    [event] = recorder.events
    assert len(base64.b64decode(event["body"])) == MAX_BODY_BYTES


def test_dev_token_is_an_unsigned_jwt() -> None:
    token = dev_token("bob", album="x")
    header, payload, signature = token.split(".")
    assert _segment(header) == {"alg": "none", "typ": "JWT"}
    assert _segment(payload) == {"sub": "bob", "album": "x"}
    assert signature == ""
    assert bearer_claims(f"Bearer {token}") == {"sub": "bob", "album": "x"}
    assert bearer_claims(None) is None


async def test_handler_answer_is_mapped_back(
    base_url: str, http: aiohttp.ClientSession, recorder: Recorder
) -> None:
    data = b"\x00\x01binary\xff"
    recorder.answer = {
        "statusCode": 418,
        "headers": {"content-type": "application/x-teapot", "x-brew": "earl grey"},
        "cookies": ["a=1; Path=/", "b=2; HttpOnly"],
        "body": base64.b64encode(data).decode(),
        "isBase64Encoded": True,
    }
    async with http.get(f"{base_url}/tea") as answer:
        assert answer.status == 418
        assert answer.headers["Content-Type"] == "application/x-teapot"
        assert answer.headers["X-Brew"] == "earl grey"
        assert answer.headers.getall("Set-Cookie") == ["a=1; Path=/", "b=2; HttpOnly"]
        assert await answer.read() == data


async def test_text_answer_is_sent_as_utf8(
    base_url: str, http: aiohttp.ClientSession, recorder: Recorder
) -> None:
    recorder.answer = {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "é"}
    async with http.get(f"{base_url}/t") as answer:
        assert await answer.read() == "é".encode()


async def test_answer_without_status_code_is_a_200_json_body(
    base_url: str, http: aiohttp.ClientSession, recorder: Recorder
) -> None:
    recorder.answer = {"hello": "world"}
    async with http.get(f"{base_url}/x") as answer:
        assert answer.status == 200
        assert await answer.json() == {"hello": "world"}


async def test_handler_exception_is_a_500_that_hides_internals(
    base_url: str, http: aiohttp.ClientSession, recorder: Recorder
) -> None:
    recorder.answer = RuntimeError("secret internals")
    async with http.get(f"{base_url}/x") as answer:
        assert answer.status == 500
        assert await answer.json() == {
            "error": {"code": "internal_error", "message": "internal error"}
        }


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
async def test_serve_api_refuses_hosts_beyond_loopback(recorder: Recorder, host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        await serve_api(recorder, host=host)


async def test_serve_api_reports_the_port_it_bound(recorder: Recorder) -> None:
    runner, url = await serve_api(recorder, host="127.0.0.1", port=0)
    try:
        assert url.startswith("http://127.0.0.1:")
        assert not url.endswith(":0")
        async with aiohttp.ClientSession() as session, session.get(f"{url}/x") as answer:
            assert answer.status == 204
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="function")
async def api_url(settings: Settings) -> AsyncIterator[str]:
    runner, url = await serve_api(MediaApi.from_settings(settings))
    yield url
    await runner.cleanup()


async def test_end_to_end_upload_and_read_back(
    api_url: str, http: aiohttp.ClientSession, s3: Any, settings: Settings
) -> None:
    def auth(sub: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {dev_token(sub)}"}

    data = b"\x89PNG\r\n\x1a\n" + bytes(100)
    declared = {"filename": "pic.png", "content_type": "image/png", "size": len(data)}
    async with http.post(f"{api_url}/uploads", json=declared, headers=auth("dana")) as answer:
        assert answer.status == 201
        created = await answer.json()
    media_id = created["media_id"]

    form = aiohttp.FormData()
    for name, value in created["upload"]["fields"].items():
        form.add_field(name, value)
    form.add_field("file", data, filename="pic.png", content_type="image/png")
    async with http.post(created["upload"]["url"], data=form) as answer:
        assert answer.status in (200, 201, 204)
    stored = s3.get_object(Bucket=settings.originals_bucket, Key=f"originals/{media_id}")
    assert stored["Body"].read() == data

    async with http.get(f"{api_url}/media/{media_id}", headers=auth("dana")) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "application/json"
        item = await answer.json()
    assert (item["media_id"], item["status"], item["filename"]) == (
        media_id,
        "PENDING_UPLOAD",
        "pic.png",
    )

    async with http.get(f"{api_url}/media/{media_id}", headers=auth("erin")) as answer:
        assert answer.status == 404
    async with http.get(f"{api_url}/media/{media_id}") as answer:
        assert answer.status == 401
        assert (await answer.json())["error"]["code"] == "unauthorized"
    async with http.delete(f"{api_url}/media/{media_id}", headers=auth("erin")) as answer:
        assert answer.status == 404
    async with http.delete(f"{api_url}/media/{media_id}", headers=auth("dana")) as answer:
        assert answer.status == 204
    async with http.get(f"{api_url}/media/{media_id}", headers=auth("dana")) as answer:
        assert answer.status == 404
    assert "Contents" not in s3.list_objects_v2(Bucket=settings.originals_bucket)


async def test_cors_preflight_and_answers_over_http(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, http: aiohttp.ClientSession
) -> None:
    origin = "http://localhost:5173"
    monkeypatch.setenv("MEDIAMILL_CORS_ORIGINS", origin)
    runner, url = await serve_api(MediaApi.from_settings(load_settings()))
    try:
        # A browser's preflight: no token, like API Gateway answers it before its authorizer.
        preflight = {"Origin": origin, "Access-Control-Request-Method": "PATCH"}
        async with http.options(f"{url}/media/{'0' * 32}", headers=preflight) as answer:
            assert answer.status == 204
            assert answer.headers["Access-Control-Allow-Origin"] == origin
            assert "PATCH" in answer.headers["Access-Control-Allow-Methods"]
        auth = {"Origin": origin, "Authorization": f"Bearer {dev_token('fay')}"}
        async with http.get(f"{url}/media", headers=auth) as answer:
            assert answer.status == 200
            assert answer.headers["Access-Control-Allow-Origin"] == origin
        async with http.get(f"{url}/openapi.json") as answer:
            assert answer.status == 200
            assert (await answer.json())["openapi"].startswith("3.1")
    finally:
        await runner.cleanup()
