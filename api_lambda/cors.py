"""CORS for a browser front end, as API Gateway's HTTP API CORS configuration answers it.

Preflight (``OPTIONS``) is answered without authentication, like API Gateway does before any
authorizer runs; other answers carry ``Access-Control-Allow-Origin`` only for an allowed origin.
No origins configured (the default): no CORS headers at all, so no web page can read answers.
"""

from __future__ import annotations

from collections.abc import Mapping

from api_lambda.responses import LambdaResponse, empty_response

ALLOWED_METHODS = "GET, POST, PATCH, DELETE"
ALLOWED_HEADERS = "authorization, content-type"
MAX_AGE_SECONDS = 600


class CorsPolicy:
    def __init__(self, origins: tuple[str, ...]) -> None:
        self._any = "*" in origins
        self._origins = frozenset(origins)

    def allowed_origin(self, headers: Mapping[str, str]) -> str | None:
        """The Access-Control-Allow-Origin value for this request's Origin, if it is allowed."""
        origin = headers.get("origin")
        if origin is None:
            return None
        if self._any:
            return "*"
        return origin if origin.lower() in self._origins else None

    def headers(self, request_headers: Mapping[str, str]) -> dict[str, str]:
        """Headers every answer carries for this request."""
        if not self._origins:
            return {}
        headers = {} if self._any else {"vary": "origin"}
        origin = self.allowed_origin(request_headers)
        if origin is not None:
            headers["access-control-allow-origin"] = origin
        return headers

    def preflight(self, request_headers: Mapping[str, str]) -> LambdaResponse:
        headers = self.headers(request_headers)
        if "access-control-allow-origin" in headers:
            headers.update(
                {
                    "access-control-allow-methods": ALLOWED_METHODS,
                    "access-control-allow-headers": ALLOWED_HEADERS,
                    "access-control-max-age": str(MAX_AGE_SECONDS),
                }
            )
        return empty_response(204, headers=headers)
