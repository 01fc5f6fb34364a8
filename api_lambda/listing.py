"""``GET /media``: the caller's media, newest first, a bounded page at a time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api_lambda.cursor import decode_cursor, encode_cursor
from api_lambda.table import MediaTable
from api_lambda.validation import AlbumName, parse

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
# Filters are applied after the index read, so a page may come back short; this bounds the
# reads per request (at most MAX_QUERIES * _FILTERED_READ items evaluated).
MAX_QUERIES = 5
_FILTERED_READ = 2 * MAX_LIMIT


class ListQuery(BaseModel):
    """The query string of ``GET /media`` (every value arrives as text)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT
    cursor: Annotated[str, Field(min_length=1)] | None = None
    album: AlbumName | None = None
    kind: Literal["image", "video"] | None = None
    status: Literal["PENDING_UPLOAD", "PROCESSING", "READY", "FAILED"] | None = None
    # A Live Photo's clip is shown through its still (its ``motion`` rendition) unless asked for.
    companions: Literal["hide", "include"] = "hide"

    def filters(self) -> dict[str, str]:
        chosen = {"album": self.album, "kind": self.kind, "status": self.status}
        return {name: value for name, value in chosen.items() if value is not None}


@dataclass(frozen=True, slots=True)
class MediaPage:
    items: list[dict[str, Any]]
    cursor: str | None  # None: nothing older matches


def parse_list_query(query: Mapping[str, str]) -> ListQuery:
    return parse(ListQuery, query)


def list_media(table: MediaTable, caller: str, query: ListQuery) -> MediaPage:
    """Up to ``query.limit`` items; the cursor resumes right after the last one read."""
    start = decode_cursor(query.cursor, caller) if query.cursor else None
    filters = query.filters()
    found: list[dict[str, Any]] = []
    for _ in range(MAX_QUERIES):
        remaining = query.limit - len(found)
        items, start = table.owner_page(
            caller,
            # Unfiltered, DynamoDB's Limit is the page; filtered, read more to fill it sooner.
            limit=_FILTERED_READ if filters else remaining,
            start=start,
            filters=filters,
            hide_companions=query.companions == "hide",
        )
        found.extend(items)
        if len(found) >= query.limit or start is None:
            break
    if len(found) > query.limit:
        # Read past the page: resume after the last item shown, not after the last one read.
        found = found[: query.limit]
        start = found[-1]
    return MediaPage(found, encode_cursor(start) if start is not None else None)
