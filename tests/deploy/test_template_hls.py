"""HLS in the template: ladders play from CloudFront, and a web player on another origin may
fetch them."""

from __future__ import annotations

from typing import Any

import pytest

from mediamill_core.settings import SettingsError, load_settings

# Managed-CORS-and-SecurityHeadersPolicy: simple CORS from any origin, plus security headers.
CORS_AND_SECURITY_HEADERS = "e61eb60c-9c35-4d20-a928-2b84e02af89c"


def test_the_api_links_ladders_under_the_renditions_distribution(template: Any) -> None:
    variables = template.properties("ApiFunction")["Environment"]["Variables"]
    assert variables["MEDIAMILL_RENDITIONS_BASE_URL"] == {
        "Fn::Sub": "https://${RenditionsDistribution.DomainName}"
    }


def test_the_distribution_answers_cross_origin_players(template: Any) -> None:
    config = template.properties("RenditionsDistribution")["DistributionConfig"]
    behaviour = config["DefaultCacheBehavior"]
    assert behaviour["ResponseHeadersPolicyId"] == CORS_AND_SECURITY_HEADERS
    assert behaviour["AllowedMethods"] == ["GET", "HEAD"]


def test_a_base_url_is_a_url_without_query_and_loses_its_trailing_slash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEDIAMILL_RENDITIONS_BASE_URL", "https://d111.cloudfront.net/media/")
    assert load_settings().renditions_base_url == "https://d111.cloudfront.net/media"
    for bad in ("d111.cloudfront.net", "https://d111.cloudfront.net/?sig=1", "ftp://x"):
        monkeypatch.setenv("MEDIAMILL_RENDITIONS_BASE_URL", bad)
        with pytest.raises(SettingsError, match="MEDIAMILL_RENDITIONS_BASE_URL"):
            load_settings()
