"""The opaque ``GET /media`` cursor: a by-owner index position, checked before any use.

Not signed: a cursor is a position in the caller's own partition, never a capability. The
query's key condition is always the caller, and a cursor naming another owner is refused
before it reaches DynamoDB, so a forged one can only move within the caller's own media.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from typing import Any

from api_lambda.errors import BadRequest
from api_lambda.table import INDEX_KEY
from mediamill_core.keys import is_media_id

# The longest position, base64url-encoded: an id, a timestamp and an owner of 255 bytes whose
# every character JSON escapes (127 two-byte characters as \uXXXX) come to about 1,150.
_MAX_LENGTH = 1200
# created_at exactly as mediamill_core.items.iso writes it: DynamoDB refuses an empty or foreign key
# value in ExclusiveStartKey with a ValidationException, which must never be a 500.
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def encode_cursor(position: dict[str, Any]) -> str:
    data = json.dumps({name: position[name] for name in INDEX_KEY}, separators=(",", ":"))
    return base64.urlsafe_b64encode(data.encode()).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, caller: str) -> dict[str, str]:
    """The position a cursor names, or BadRequest unless it is a well-formed one of the caller's."""
    try:
        if len(cursor) > _MAX_LENGTH:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
    except (binascii.Error, UnicodeError, ValueError, RecursionError):
        raise _invalid() from None
    if not isinstance(position, dict) or sorted(position) != sorted(INDEX_KEY):
        raise _invalid()
    if not all(isinstance(position[name], str) for name in INDEX_KEY):
        raise _invalid()
    if not is_media_id(position["media_id"]) or not _is_timestamp(position["created_at"]):
        raise _invalid()
    if position["owner"] != caller:
        raise BadRequest("cursor: belongs to another listing", code="invalid_cursor")
    return position


def _is_timestamp(value: str) -> bool:
    if not _TIMESTAMP.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value)  # a real date and time, not 2024-13-45T99:...
    except ValueError:
        return False
    return True


def _invalid() -> BadRequest:
    return BadRequest("cursor: is not a cursor this API returned", code="invalid_cursor")
