"""``GET /media?companions=``: documented, and anything but ``hide`` or ``include`` refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Call = Callable[..., tuple[int, dict[str, str], Any]]


def test_the_companions_filter_is_in_the_openapi_document(call: Call) -> None:
    _, _, document = call("GET", "/openapi.json")
    parameters = {p["name"]: p for p in document["paths"]["/media"]["get"]["parameters"]}
    schema = parameters["companions"]["schema"]
    assert schema["enum"] == ["hide", "include"]
    assert schema["default"] == "hide"
    media = document["components"]["schemas"]["Media"]["properties"]
    assert {"live_video_id", "companion_of"} <= set(media)


def test_an_unknown_companions_value_is_a_clear_400(call: Call) -> None:
    status, _, body = call("GET", "/media", query={"companions": "only"})
    assert status == 400
    assert "companions" in str(body)
