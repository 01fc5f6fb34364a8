"""GET /openapi.json: served without a token, valid OpenAPI 3.1, and the routes as they are."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from openapi_spec_validator import validate

from api_lambda.app import MediaApi
from api_lambda.listing import MAX_LIMIT

Call = Callable[..., tuple[int, dict[str, str], Any]]
_METHODS = {"get", "put", "post", "delete", "patch", "options", "head"}


def test_served_without_a_token_and_valid(call: Call) -> None:
    status, headers, document = call("GET", "/openapi.json", sub=None)
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_route_is_documented_and_nothing_else(call: Call, api: MediaApi) -> None:
    _, _, document = call("GET", "/openapi.json")
    documented = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in _METHODS
    }
    routed = {(route.method, route.template) for route in api.router.routes}
    assert documented == routed


def test_only_the_document_itself_is_public(call: Call, api: MediaApi) -> None:
    _, _, document = call("GET", "/openapi.json")
    public = {(route.method, route.template) for route in api.router.routes if route.public}
    assert public == {("GET", "/openapi.json")}
    assert document["paths"]["/openapi.json"]["get"]["security"] == []
    assert document["security"] == [{"jwt": []}]


def test_request_schemas_are_the_validation_models(call: Call) -> None:
    _, _, document = call("GET", "/openapi.json")
    schemas = document["components"]["schemas"]
    assert schemas["UploadRequest"]["additionalProperties"] is False
    assert set(schemas["MediaEdit"]["properties"]) == {"title", "description", "album"}
    limit = next(
        p for p in document["paths"]["/media"]["get"]["parameters"] if p["name"] == "limit"
    )
    assert limit["schema"]["maximum"] == MAX_LIMIT
