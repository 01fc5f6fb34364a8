"""The HTTP API in the template against api_lambda's own routes and settings."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from api_lambda.app import MediaApi
from mediamill_core.settings import Settings, load_settings

PUBLIC_ROUTES = {"OPTIONS /{proxy+}"}  # preflights: the function answers them, tokenless


def _router_routes() -> dict[str, bool]:
    # Clients are only stored when the app is built: no AWS is needed to list its routes.
    api = MediaApi(Settings(), s3=object(), dynamodb=object(), sns=object())  # type: ignore[arg-type]
    return {f"{route.method} {route.template}": route.public for route in api.router.routes}


def _template_routes(template: Any) -> dict[str, dict[str, Any]]:
    return {
        resource["Properties"]["RouteKey"]: resource
        for resource in template.of_type("AWS::ApiGatewayV2::Route").values()
    }


def test_the_template_routes_exactly_the_functions_routes(template: Any) -> None:
    routes = _template_routes(template)
    assert set(routes) - PUBLIC_ROUTES == set(_router_routes())


def test_only_the_functions_public_routes_go_without_a_token(template: Any) -> None:
    public = _router_routes()
    for key, route in _template_routes(template).items():
        properties = route["Properties"]
        assert properties["Target"] == {"Fn::Sub": "integrations/${ApiIntegration}"}
        if key in PUBLIC_ROUTES or public[key]:
            assert properties["AuthorizationType"] == "NONE", key
        else:
            assert properties["AuthorizationType"] == "JWT", key
            assert properties["AuthorizerId"] == {"Ref": "JwtAuthorizer"}, key


def test_preflights_have_a_route_only_when_origins_may_call(template: Any) -> None:
    preflight = _template_routes(template)["OPTIONS /{proxy+}"]
    assert preflight["Condition"] == "HasApiOrigins"


def test_the_authorizer_checks_issuer_and_audience(template: Any) -> None:
    authorizer = template.properties("JwtAuthorizer")
    assert authorizer["AuthorizerType"] == "JWT"
    assert authorizer["IdentitySource"] == ["$request.header.Authorization"]
    assert authorizer["JwtConfiguration"] == {
        "Issuer": {"Ref": "JwtIssuer"},
        "Audience": {"Ref": "JwtAudience"},
    }


def test_the_integration_sends_payload_2_to_the_handler(template: Any) -> None:
    integration = template.properties("ApiIntegration")
    assert integration["IntegrationType"] == "AWS_PROXY"
    assert integration["PayloadFormatVersion"] == "2.0"
    assert integration["IntegrationUri"] == {"Fn::GetAtt": ["ApiFunction", "Arn"]}
    function = template.properties("ApiFunction")
    module, _, name = function["Handler"].rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))
    # Runtime and architecture follow what `make lambda` builds for (test_lambda_artefact.py).
    # The function's own timeout comes first: the caller gets its error body, not the gateway's.
    assert function["Timeout"] * 1000 < integration["TimeoutInMillis"] <= 30000


def test_the_stage_has_no_prefix_logs_and_throttling(template: Any) -> None:
    stage = template.properties("ApiStage")
    assert stage["StageName"] == "$default"  # the function's routes carry no stage prefix
    assert stage["AutoDeploy"] is True
    assert stage["AccessLogSettings"]["DestinationArn"] == {
        "Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]
    }
    assert "$context.status" in stage["AccessLogSettings"]["Format"]
    assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] == {"Ref": "ApiRateLimit"}
    assert stage["DefaultRouteSettings"]["ThrottlingBurstLimit"] == {"Ref": "ApiBurstLimit"}


def test_only_this_api_may_invoke_the_function(template: Any) -> None:
    permission = template.properties("ApiInvokePermission")
    assert permission["Principal"] == "apigateway.amazonaws.com"
    assert permission["FunctionName"] == {"Ref": "ApiFunction"}
    assert template.resolve(permission["SourceArn"]) == (
        "arn:aws:execute-api:eu-west-1:123456789012:<HttpApi>/*"
    )


def test_every_variable_is_a_setting_the_api_accepts(
    template: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    variables = template.properties("ApiFunction")["Environment"]["Variables"]
    unknown = {
        name
        for name in variables
        if not name.startswith("MEDIAMILL_")
        or name.removeprefix("MEDIAMILL_").lower() not in Settings.model_fields
    }
    assert not unknown, f"not settings of mediamill_core.settings.Settings: {unknown}"
    for origins in ("", "https://app.example.com,https://admin.example.com"):
        for name, value in variables.items():
            monkeypatch.setenv(name, str(template.resolve(value, ApiOrigins=origins)))
        settings = load_settings()
        assert settings.cors_origins == tuple(filter(None, origins.split(",")))
    assert variables["MEDIAMILL_REGION"] == {"Ref": "AWS::Region"}  # not the settings' default
    assert variables["MEDIAMILL_TABLE"] == {"Ref": "MediaTable"}
    assert variables["MEDIAMILL_ORIGINALS_BUCKET"] == {"Ref": "OriginalsBucket"}
    assert variables["MEDIAMILL_RENDITIONS_BUCKET"] == {"Ref": "RenditionsBucket"}
    assert variables["MEDIAMILL_MEDIA_TOPIC_ARN"] == {"Ref": "MediaEventsTopic"}
