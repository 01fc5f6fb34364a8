"""CORS: preflight without authentication, headers only for allowed origins, none by default."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from api_lambda.app import MediaApi
from mediamill_core.settings import SettingsError, load_settings

APP = "https://app.example.com"
PREFLIGHT = {"origin": APP, "access-control-request-method": "POST"}


def _api(monkeypatch: pytest.MonkeyPatch, origins: str | None) -> MediaApi:
    if origins is not None:
        monkeypatch.setenv("MEDIAMILL_CORS_ORIGINS", origins)
    return MediaApi.from_settings(load_settings())


@pytest.mark.usefixtures("settings")
def test_preflight_for_an_allowed_origin_needs_no_token(
    monkeypatch: pytest.MonkeyPatch, send: Callable[..., Any]
) -> None:
    api = _api(monkeypatch, f"{APP}, http://localhost:5173")
    status, headers, body = send(api, "OPTIONS", "/uploads", sub=None, headers=PREFLIGHT)
    assert (status, body) == (204, None)
    assert headers["access-control-allow-origin"] == APP
    assert set(headers["access-control-allow-methods"].split(", ")) == {
        "GET",
        "POST",
        "PATCH",
        "DELETE",
    }
    assert "authorization" in headers["access-control-allow-headers"]
    assert headers["vary"] == "origin"


@pytest.mark.usefixtures("settings")
def test_answers_carry_the_origin_only_when_it_is_allowed(
    monkeypatch: pytest.MonkeyPatch, send: Callable[..., Any]
) -> None:
    api = _api(monkeypatch, APP)
    status, headers, _ = send(api, "GET", "/media", headers={"origin": APP})
    assert status == 200
    assert headers["access-control-allow-origin"] == APP
    # Errors too, or a browser hides the reason from the page.
    status, headers, _ = send(api, "GET", "/media", sub=None, headers={"origin": APP})
    assert status == 401
    assert headers["access-control-allow-origin"] == APP

    evil = {"origin": "https://evil.example"}
    for method in ("GET", "OPTIONS"):
        _, headers, _ = send(api, method, "/media", headers=evil)
        assert "access-control-allow-origin" not in headers
        assert "access-control-allow-methods" not in headers


@pytest.mark.usefixtures("settings")
def test_no_origins_by_default_means_no_cors_headers(
    monkeypatch: pytest.MonkeyPatch, send: Callable[..., Any]
) -> None:
    api = _api(monkeypatch, None)
    for method in ("GET", "OPTIONS"):
        _, headers, _ = send(api, method, "/media", headers=PREFLIGHT)
        assert not [name for name in headers if name.startswith("access-control")]


@pytest.mark.usefixtures("settings")
def test_star_allows_any_origin(monkeypatch: pytest.MonkeyPatch, send: Callable[..., Any]) -> None:
    api = _api(monkeypatch, "*")
    _, headers, _ = send(api, "OPTIONS", "/media", sub=None, headers=PREFLIGHT)
    assert headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("origins", ["app.example.com", "https://app.example.com/", "ftp://x"])
def test_an_origin_that_is_not_one_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, origins: str
) -> None:
    monkeypatch.setenv("MEDIAMILL_CORS_ORIGINS", origins)
    with pytest.raises(SettingsError, match="MEDIAMILL_CORS_ORIGINS"):
        load_settings()
