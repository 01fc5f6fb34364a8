"""Events API Gateway would not send, and subs no store can key on: JSON answers, never a crash."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from api_lambda.app import MediaApi
from api_lambda.request import MAX_SUB_BYTES
from mediamill_core.settings import Settings
from mediamill_testkit.client import api_event, raw_item

JPEG = {"filename": "holiday.jpg", "content_type": "image/jpeg", "size": 2048}
Mutation = Callable[[dict[str, Any]], Any]


def _event() -> dict[str, Any]:
    return api_event("POST", "/uploads", body=JPEG)


def _set(path: str, value: Any) -> Mutation:
    """Set (or, with ``...``, remove) the value at a dotted path of the event."""

    def mutate(event: dict[str, Any]) -> dict[str, Any]:
        *parents, last = path.split(".")
        node = event
        for name in parents:
            node = node[name]
        if value is ...:
            del node[last]
        else:
            node[last] = value
        return event

    return mutate


def _answer_is_well_formed(answer: Any) -> dict[str, Any]:
    """A payload 2.0 answer Lambda can serialise, whose error body has the documented shape."""
    assert isinstance(answer, dict)
    assert isinstance(answer["statusCode"], int)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in answer["headers"].items())
    assert answer["isBase64Encoded"] is False
    json.dumps(answer).encode("utf-8")  # what the Lambda runtime does with it
    if answer["statusCode"] == 204:
        assert answer["body"] == ""
        return {}
    body: dict[str, Any] = json.loads(answer["body"])
    assert answer["headers"]["content-type"] == "application/json"
    if answer["statusCode"] >= 400:
        assert set(body) == {"error"}
        assert isinstance(body["error"]["code"], str)
        assert isinstance(body["error"]["message"], str)
    return body


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        pytest.param(lambda e: None, "the event must be a JSON object", id="event-null"),
        pytest.param(lambda e: [e], "the event must be a JSON object", id="event-list"),
        pytest.param(lambda e: json.dumps(e), "the event must be a JSON object", id="event-text"),
        pytest.param(lambda e: {}, "version", id="event-empty"),
        pytest.param(_set("version", ...), "version", id="no-version"),
        pytest.param(_set("version", "1.0"), "version", id="payload-1.0"),
        pytest.param(_set("version", 2.0), "version", id="version-number"),
        pytest.param(_set("requestContext", ...), "requestContext", id="no-context"),
        pytest.param(_set("requestContext", None), "requestContext", id="context-null"),
        pytest.param(_set("requestContext", []), "requestContext", id="context-list"),
        pytest.param(_set("requestContext", "ctx"), "requestContext", id="context-text"),
        pytest.param(_set("requestContext.http", ...), "requestContext.http", id="no-http"),
        pytest.param(_set("requestContext.http", ["POST"]), "requestContext.http", id="http-list"),
        pytest.param(_set("requestContext.http.method", 1), "http.method", id="method-number"),
        pytest.param(_set("requestContext.http.method", None), "http.method", id="method-null"),
        pytest.param(_set("requestContext.http.method", ""), "http.method", id="method-empty"),
        pytest.param(_set("requestContext.stage", 7), "requestContext.stage", id="stage-number"),
        pytest.param(_set("requestContext.requestId", 7), "requestId", id="request-id-number"),
        pytest.param(_set("requestContext.authorizer", "alice"), "authorizer", id="authz-text"),
        pytest.param(_set("requestContext.authorizer", ["jwt"]), "authorizer", id="authz-list"),
        pytest.param(_set("requestContext.authorizer.jwt", "token"), "jwt", id="jwt-text"),
        pytest.param(_set("requestContext.authorizer.jwt.claims", ["sub"]), "claims", id="claims"),
        pytest.param(_set("rawPath", ...), "rawPath", id="no-path"),
        pytest.param(_set("rawPath", ["/uploads"]), "rawPath", id="path-list"),
        pytest.param(_set("rawPath", None), "rawPath", id="path-null"),
        pytest.param(_set("headers", ["content-type"]), "headers", id="headers-list"),
        pytest.param(_set("headers.x-many", ["a", "b"]), "headers.x-many", id="header-list"),
        pytest.param(_set("headers.x-n", 5), "headers.x-n", id="header-number"),
        pytest.param(_set("headers.x-none", None), "headers.x-none", id="header-null"),
        pytest.param(_set("queryStringParameters", [["a", "b"]]), "queryString", id="query-list"),
        pytest.param(_set("queryStringParameters", {"a": ["b"]}), "queryString", id="query-value"),
        pytest.param(_set("body", 5), "body", id="body-number"),
        pytest.param(_set("body", JPEG), "body", id="body-object"),
        pytest.param(_set("body", b"{}"), "body", id="body-bytes"),
        pytest.param(_set("isBase64Encoded", "false"), "isBase64Encoded", id="base64-text"),
        pytest.param(_set("isBase64Encoded", 1), "isBase64Encoded", id="base64-number"),
        pytest.param(_set("isBase64Encoded", None), "isBase64Encoded", id="base64-null"),
    ],
)
def test_an_event_of_another_shape_is_a_json_400_naming_the_field(
    api: MediaApi, dynamodb: Any, settings: Settings, mutate: Mutation, field: str
) -> None:
    answer = api(mutate(_event()), None)

    body = _answer_is_well_formed(answer)
    assert answer["statusCode"] == 400
    assert body["error"]["code"] == "invalid_event"
    message = body["error"]["message"]
    assert message.startswith("not an API Gateway HTTP API payload 2.0 event: ")
    assert field in message
    assert dynamodb.scan(TableName=settings.table, Select="COUNT")["Count"] == 0


class _Exploding(Mapping[str, Any]):
    """A mapping that fails when read: stands for a fault of our own while reading an event."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("boom")

    def __len__(self) -> int:
        return 1


def test_a_fault_while_reading_the_event_is_a_json_500(api: MediaApi) -> None:
    answer = api(_Exploding(), None)
    assert answer["statusCode"] == 500
    assert _answer_is_well_formed(answer) == {
        "error": {"code": "internal_error", "message": "internal error"}
    }


_HOSTILE_VALUES = [
    None,
    0,
    -1,
    1.5,
    True,
    "",
    " ",
    "\x00",
    "\ud800",
    "x" * 10_000,
    [],
    ["a", 1],
    {},
    {"a": [None]},
]


def _paths(node: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(node, dict):
        for name, value in node.items():
            yield (*prefix, name)
            yield from _paths(value, (*prefix, name))


def _mutants(event: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every event that differs from ``event`` in one place: a value replaced, or removed."""
    for path in list(_paths(event)):
        for value in [..., *_HOSTILE_VALUES]:
            mutant = copy.deepcopy(event)
            node = mutant
            for name in path[:-1]:
                node = node[name]
            if value is ...:
                del node[path[-1]]
            else:
                node[path[-1]] = copy.deepcopy(value)
            yield mutant


def _fuzz_bases() -> list[dict[str, Any]]:
    listing = api_event("GET", "/media")
    listing["queryStringParameters"] = {"limit": "5", "album": "Summer"}
    return [_event(), listing, api_event("PATCH", f"/media/{'0' * 32}", body={"title": "t"})]


def test_no_single_change_to_an_event_makes_an_exception_or_a_500(api: MediaApi) -> None:
    seen: dict[int, int] = {}
    for base in _fuzz_bases():
        for mutant in _mutants(base):
            answer = api(mutant, None)
            _answer_is_well_formed(answer)
            assert answer["statusCode"] != 500, (mutant, answer)
            seen[answer["statusCode"]] = seen.get(answer["statusCode"], 0) + 1
    # The mutations reach every layer: the event check, the caller, the routes, validation.
    assert {400, 401, 404}.issubset(seen)
    assert 201 in seen or 429 in seen  # harmless changes still create uploads


@pytest.mark.parametrize(
    ("sub", "reason"),
    [
        pytest.param(123, "must be a string", id="number"),
        pytest.param(True, "must be a string", id="boolean"),
        pytest.param(["alice"], "must be a string", id="list"),
        pytest.param({"id": "alice"}, "must be a string", id="object"),
        pytest.param("", "is empty", id="empty"),
        pytest.param("   ", "is empty", id="blank"),
        pytest.param("ali\x00ce", "holds control characters", id="nul"),
        pytest.param("alice\n", "holds control characters", id="newline"),
        pytest.param("al\x7fice", "holds control characters", id="del"),
        pytest.param("\u202ealice", "holds control characters", id="bidi"),
        pytest.param("ali\ud800ce", "is not valid Unicode text", id="lone-surrogate"),
        pytest.param("a" * (MAX_SUB_BYTES + 1), "is longer than 255 bytes", id="256-ascii"),
        pytest.param("\u00e9" * 128, "is longer than 255 bytes", id="256-bytes-utf8"),
        pytest.param("a" * 2049, "is longer than 255 bytes", id="over-dynamodb-key"),
        pytest.param("a" * 100_000, "is longer than 255 bytes", id="huge"),
    ],
)
def test_a_sub_that_cannot_be_an_owner_is_401_and_writes_nothing(
    api: MediaApi, dynamodb: Any, settings: Settings, sub: Any, reason: str
) -> None:
    for method, path in [("POST", "/uploads"), ("GET", "/media"), ("GET", f"/media/{'0' * 32}")]:
        event = api_event(method, path, body=JPEG if method == "POST" else None)
        event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = sub

        answer = api(event, None)

        body = _answer_is_well_formed(answer)
        assert answer["statusCode"] == 401
        assert answer["headers"]["www-authenticate"] == 'Bearer error="invalid_token"'
        assert body["error"] == {
            "code": "unauthorized",
            "message": f"the token's sub claim {reason}; it cannot name a user",
        }
    assert dynamodb.scan(TableName=settings.table, Select="COUNT")["Count"] == 0


@pytest.mark.parametrize(
    "sub",
    [
        pytest.param("a" * MAX_SUB_BYTES, id="255-ascii"),
        pytest.param("\u00e9" * 127, id="254-bytes-utf8"),
        pytest.param("auth0|5f7c8ec7c33c6c004bbafe82", id="auth0"),
        pytest.param("Zoë O'Brien <zoe@example.com>", id="punctuation-and-accents"),
    ],
)
def test_the_longest_and_oddest_usable_subs_are_owners(
    api: MediaApi, dynamodb: Any, settings: Settings, sub: str
) -> None:
    answer = api(api_event("POST", "/uploads", body=JPEG, sub=sub), None)
    assert answer["statusCode"] == 201, answer
    media_id = json.loads(answer["body"])["media_id"]
    assert raw_item(dynamodb, settings.table, media_id)["owner"] == sub  # type: ignore[index]
    listed = api(api_event("GET", "/media", sub=sub), None)
    assert [item["media_id"] for item in json.loads(listed["body"])["items"]] == [media_id]


def test_a_refused_sub_still_reads_the_public_document(api: MediaApi) -> None:
    event = api_event("GET", "/openapi.json", sub="a" * 5000)
    assert api(event, None)["statusCode"] == 200
