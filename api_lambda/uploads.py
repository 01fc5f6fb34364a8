"""What ``POST /uploads`` accepts: strict validation of the declared file, with readable reasons."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from api_lambda.validation import AlbumName, parse, refuse_control_characters
from mediamill_core.keys import RAW_TYPES

_PATH_SEPARATORS = re.compile(r"[/\\]")
_UNKNOWN_TYPE = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class UploadLimits:
    content_types: tuple[str, ...]
    max_bytes: int


class UploadRequest(BaseModel):
    """The client's declaration of the file it is about to upload."""

    # Strict: a bool, a float or a numeric string is not a size.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    filename: Annotated[str, Field(min_length=1, max_length=255)]
    content_type: Annotated[str, Field(min_length=1, max_length=255)]
    size: int
    album: AlbumName | None = None

    @field_validator("filename")
    @classmethod
    def _base_name(cls, value: str) -> str:
        refuse_control_characters(value)
        # Metadata only (the key never comes from it), so the base name is all worth keeping.
        base = _PATH_SEPARATORS.split(value)[-1]
        if not base.strip() or base in (".", ".."):
            raise PydanticCustomError("filename", "must end with a file name")
        return base

    @field_validator("content_type")
    @classmethod
    def _allowed_type(cls, value: str, info: ValidationInfo) -> str:
        media_type = value.split(";", 1)[0].strip().lower()
        if media_type == _UNKNOWN_TYPE:  # what a browser declares for a file type it does not know
            media_type = _raw_type(info.data.get("filename")) or media_type
        accepted = _limits(info).content_types
        if media_type not in accepted:
            raise PydanticCustomError(
                "content_type",
                "{media_type} is not accepted; accepted types: {accepted}",
                {"media_type": repr(media_type), "accepted": ", ".join(accepted)},
            )
        return media_type

    @field_validator("size")
    @classmethod
    def _size_in_range(cls, value: int, info: ValidationInfo) -> int:
        if value < 1:
            raise PydanticCustomError("size", "must be at least 1 byte")
        limit = _limits(info).max_bytes
        if value > limit:
            raise PydanticCustomError(
                "size",
                "{size} bytes exceeds the limit of {limit} bytes",
                {"size": value, "limit": limit},
            )
        return value


def parse_upload(data: Mapping[str, Any], limits: UploadLimits) -> UploadRequest:
    """The validated declaration, or BadRequest naming every field that is wrong and why."""
    return parse(UploadRequest, data, context={"limits": limits})


def _raw_type(filename: str | None) -> str | None:
    """The camera RAW media type a file name's extension names, if any."""
    _, dot, extension = (filename or "").rpartition(".")
    return RAW_TYPES.get(extension.lower()) if dot else None


def _limits(info: ValidationInfo) -> UploadLimits:
    limits = (info.context or {}).get("limits")
    if not isinstance(limits, UploadLimits):
        raise TypeError("UploadRequest is validated through parse_upload, which passes the limits")
    return limits
