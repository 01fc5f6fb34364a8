"""A local stand-in for API Gateway (HTTP API, payload 2.0) in front of the API Lambda.

For ``mediamill dev`` and tests on loopback ONLY. It plays the JWT authorizer without
verifying any signature: whoever can reach it can claim to be any user. Production runs the
handler behind API Gateway and its real JWT authorizer; nothing here is deployed.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
from aiohttp import web
from multidict import CIMultiDict

log = logging.getLogger(__name__)

# The Lambda handler's signature: (event, context) -> payload 2.0 answer.
LambdaHandler = Callable[[dict[str, Any], Any], Any]

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
LOCAL_ACCOUNT_ID = "000000000000"
LOCAL_API_ID = "local"
_TEXT_MEDIA_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/x-www-form-urlencoded",
    }
)
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class InvalidToken(ValueError):
    """The bearer token is not a well-formed, unexpired JWT."""


def create_app(api: LambdaHandler) -> web.Application:
    """An aiohttp application that sends every request, any method and path, to ``api``."""

    async def proxy(request: web.Request) -> web.StreamResponse:
        try:
            claims = bearer_claims(request.headers.get("Authorization"))
        except InvalidToken as exc:
            # Where API Gateway's JWT authorizer refuses the token: the function never runs.
            return _error_answer(
                401,
                "unauthorized",
                f"the bearer token is not valid: {exc}",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error_answer(
                413,
                "payload_too_large",
                f"the request body exceeds the API's limit of {MAX_BODY_BYTES} bytes",
            )
        event = request_event(request, body, claims)
        try:
            result = await anyio.to_thread.run_sync(api, event, None)
        except Exception:
            log.exception("the API handler raised on %s %s", request.method, request.path)
            return _error_answer(500, "internal_error", "internal error")
        return http_response(result)

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_route("*", "/{path:.*}", proxy)
    return app


async def serve_api(
    api: LambdaHandler, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, str]:
    """Start the adapter on loopback; the caller cleans up the runner. Returns the base URL."""
    if not _is_loopback(host):
        raise ValueError(
            f"the local API trusts unverified tokens: serve it on loopback, not {host}"
        )
    runner = web.AppRunner(create_app(api))
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_host, bound_port = runner.addresses[0][:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    return runner, f"http://{shown}:{bound_port}"


def dev_token(sub: str, **claims: Any) -> str:
    """An unsigned JWT (``alg: none``) carrying ``sub`` and ``claims``, for the local API only."""
    header = {"alg": "none", "typ": "JWT"}
    payload = {"sub": sub, **claims}
    return f"{_base64url_json(header)}.{_base64url_json(payload)}."


def bearer_claims(authorization: str | None) -> dict[str, str] | None:
    """Claims as API Gateway passes them, None without a bearer token, InvalidToken if malformed."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise InvalidToken("a JWT has three dot-separated parts")
    _decode_segment(parts[0])
    payload = _decode_segment(parts[1])
    exp = payload.get("exp")
    if isinstance(exp, int | float) and not isinstance(exp, bool) and exp < time.time():
        raise InvalidToken("the token has expired")
    return {name: _claim_text(value) for name, value in payload.items()}


def request_event(
    request: web.Request, body: bytes, claims: Mapping[str, str] | None
) -> dict[str, Any]:
    """The HTTP API payload 2.0 event API Gateway would send for this request."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers.items():
        key = name.lower()
        if key == "cookie":
            # Payload 2.0 moves cookies out of the headers into their own list.
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
        else:
            headers[key] = f"{headers[key]},{value}" if key in headers else value
    headers.setdefault("x-forwarded-proto", request.scheme)  # as API Gateway adds it
    query: dict[str, str] = {}
    for name, value in request.rel_url.query.items():
        query[name] = f"{query[name]},{value}" if name in query else value

    now = datetime.now(UTC)
    http = {
        "method": request.method,
        "path": request.rel_url.path,
        "protocol": f"HTTP/{request.version.major}.{request.version.minor}",
        "sourceIp": request.remote or "127.0.0.1",
        "userAgent": request.headers.get("User-Agent", ""),
    }
    context: dict[str, Any] = {
        "accountId": LOCAL_ACCOUNT_ID,
        "apiId": LOCAL_API_ID,
        "domainName": request.host,
        "domainPrefix": request.host.split(".")[0],
        "http": http,
        "requestId": str(uuid.uuid4()),
        "routeKey": "$default",
        "stage": "$default",
        "time": f"{now:%d}/{_MONTHS[now.month - 1]}/{now:%Y:%H:%M:%S} +0000",
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if claims is not None:
        context["authorizer"] = {"jwt": {"claims": dict(claims), "scopes": None}}

    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": request.rel_url.raw_path,
        "rawQueryString": request.rel_url.raw_query_string,
        "headers": headers,
        "requestContext": context,
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if body:
        text = _as_text(body, request.headers.get("Content-Type", ""))
        if text is None:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
        else:
            event["body"] = text
    return event


def _error_answer(
    status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    """An answer the adapter makes itself, in the API's error shape (docs/api.md)."""
    body = json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":"))
    return web.Response(
        status=status,
        body=body.encode(),
        headers={
            "Content-Type": "application/json",
            "Cache-Control": "no-store",
            **(headers or {}),
        },
    )


def http_response(result: Any) -> web.Response:
    """The HTTP answer API Gateway makes of what the function returned."""
    if not isinstance(result, dict) or "statusCode" not in result:
        # Payload 2.0 treats any other JSON the function returns as a 200 JSON body.
        return web.json_response(result)
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in (result.get("headers") or {}).items():
        if name.lower() != "content-length":
            headers[name] = str(value)
    for cookie in result.get("cookies") or ():
        headers.add("Set-Cookie", cookie)
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
    return web.Response(status=int(result["statusCode"]), body=raw, headers=headers)


def _as_text(body: bytes, content_type: str) -> str | None:
    media_type = content_type.split(";", 1)[0].strip().lower()
    textual = (
        media_type.startswith("text/")
        or media_type in _TEXT_MEDIA_TYPES
        or media_type.endswith(("+json", "+xml"))
    )
    if not textual:
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _decode_segment(segment: str) -> dict[str, Any]:
    if not segment or not _BASE64URL.match(segment):
        raise InvalidToken("a JWT segment is not base64url")
    try:
        data = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError):
        raise InvalidToken("a JWT segment is not base64url JSON") from None
    if not isinstance(data, dict):
        raise InvalidToken("a JWT segment is not a JSON object")
    return data


def _claim_text(value: Any) -> str:
    # API Gateway hands every claim to the function as a string; arrays become "[a b]".
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(_claim_text(item) for item in value) + "]"
    return json.dumps(value, separators=(",", ":"))


def _base64url_json(data: Mapping[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
