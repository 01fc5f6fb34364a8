"""Errors a route raises on purpose; each becomes a JSON error answer with its status."""

from __future__ import annotations

from collections.abc import Mapping


class ApiError(Exception):
    """Base: an HTTP status, a stable code and a message safe to show the caller."""

    status = 500
    code = "internal_error"

    def __init__(
        self, message: str, *, code: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})


class BadRequest(ApiError):
    """The request cannot be accepted as sent; the message says why."""

    status = 400
    code = "invalid_request"


class Unauthorized(ApiError):
    """No verified caller: no ``sub`` claim, or one that cannot be a user id."""

    status = 401
    code = "unauthorized"


class NotFound(ApiError):
    """No such route, or no such media for this caller."""

    status = 404
    code = "not_found"


class MethodNotAllowed(ApiError):
    """The path exists but not with this method."""

    status = 405
    code = "method_not_allowed"


class Conflict(ApiError):
    """The media is not in a state that allows this (e.g. no multipart upload in progress)."""

    status = 409
    code = "conflict"


class TooManyRequests(ApiError):
    """A per-owner limit is reached (open uploads, bytes pending); the message names it."""

    status = 429
    code = "too_many_requests"
