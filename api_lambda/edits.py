"""What ``PATCH /media/{id}`` accepts: the owner's own words about an item."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from api_lambda.validation import AlbumName, parse, refuse_control_characters

TITLE_MAX = 200
DESCRIPTION_MAX = 2000
# A description is prose: line breaks and tabs belong in it; other controls still do not.
_PROSE_CONTROLS = frozenset("\n\t")


def _prose(value: str) -> str:
    return refuse_control_characters(value, allowed=_PROSE_CONTROLS)


Title = Annotated[
    str, Field(min_length=1, max_length=TITLE_MAX), AfterValidator(refuse_control_characters)
]
Description = Annotated[
    str, Field(min_length=1, max_length=DESCRIPTION_MAX), AfterValidator(_prose)
]


class MediaEdit(BaseModel):
    """Fields to change; a field sent as ``null`` is cleared, one left out is kept."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    title: Title | None = None
    description: Description | None = None
    album: AlbumName | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> MediaEdit:
        if not self.model_fields_set:
            raise PydanticCustomError(
                "nothing_to_change", "send at least one of title, description, album"
            )
        return self

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


def parse_edit(data: Mapping[str, Any]) -> MediaEdit:
    return parse(MediaEdit, data)
