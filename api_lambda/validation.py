"""Bodies and query strings checked by pydantic models, refused with reasons a developer reads."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, Field, ValidationError
from pydantic_core import PydanticCustomError

from api_lambda.errors import BadRequest

Model = TypeVar("Model", bound=BaseModel)

# Controls (NUL, newlines, DEL, C1); lone surrogates, which no store can encode as UTF-8, are
# refused here too although pydantic's length check already rejects them.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs"})
# Bidirectional overrides let "gpj.exe" be displayed as "exe.jpg".
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

# Pydantic's wording for the common cases, said the way a client developer would.
_REASONS = {
    "missing": "is required",
    "extra_forbidden": "is not an accepted field",
    "string_type": "must be a string",
    "string_unicode": "must be valid Unicode text",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "list_type": "must be a list",
    "model_type": "must be an object",
    "dict_type": "must be an object",
    "bool_type": "must be a boolean",
}


def parse(model: type[Model], data: Mapping[str, Any], context: Any = None) -> Model:
    """The validated model, or BadRequest naming every field that is wrong and why."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        reasons = []
        for error in exc.errors(include_url=False, include_input=False):
            field = ".".join(str(part) for part in error["loc"]) or "body"
            reasons.append(f"{field}: {_REASONS.get(error['type'], error['msg'])}")
        raise BadRequest("; ".join(reasons)) from None


def has_control_characters(value: str, allowed: frozenset[str] = frozenset()) -> bool:
    """Whether ``value`` holds a control character (lone surrogates included) not in ``allowed``."""
    return any(
        char not in allowed
        and (unicodedata.category(char) in _FORBIDDEN_CATEGORIES or char in _BIDI_CONTROLS)
        for char in value
    )


def refuse_control_characters(value: str, allowed: frozenset[str] = frozenset()) -> str:
    """``value`` unchanged, or a validation error when it holds a control character."""
    if has_control_characters(value, allowed):
        raise PydanticCustomError("control_character", "must not contain control characters")
    return value


# An album is a label the owner gives: one line of text, used as an exact-match filter.
AlbumName = Annotated[
    str, Field(min_length=1, max_length=128), AfterValidator(refuse_control_characters)
]
