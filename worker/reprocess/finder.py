"""Which items a ``mediamill reprocess`` run picks, read page by page from the media table.

Without ``--owner`` the table is read with a parallel Scan, projected to what the choice needs;
with it, the owner's items come from the ``by-owner`` index (with ``--since`` in the key
condition). Either way each page comes with the position after it, for the checkpoint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from mediamill_core.items import OWNER_INDEX, RESERVED_KEY_PREFIX
from mediamill_core.items import decode as _decode
from mediamill_core.items import encode as _encode
from mediamill_core.reprocess import Mode
from stages.contract import MediaKind, Stage
from worker.reprocess.plan import not_applicable, owed

# What the choice reads of an item; the worker reads the whole item again before it acts.
_PROJECTION = ("media_id", "status", "kind", "owner", "created_at", "stages")
PAGE_ITEMS = 250


@dataclass(frozen=True, slots=True)
class Selection:
    """What a run asks for: the stage, the mode, and the filters."""

    stage: Stage
    mode: Mode
    kind: MediaKind | None = None
    owner: str | None = None
    since: str | None = None  # ISO 8601 in UTC, as created_at is stored

    def reason(self, item: dict[str, Any]) -> tuple[bool, str]:
        """(picked, why): why it is sent, or why it is skipped."""
        if self.kind is not None and item.get("kind") != self.kind.value:
            return False, f"not {self.kind.value} (--kind)"
        if self.since is not None and str(item.get("created_at") or "") < self.since:
            return False, "created before --since"
        refused = not_applicable(item, self.stage)
        if refused is not None:
            return False, refused
        why = owed(item, self.stage, self.mode)
        if why is None:
            return False, "up to date" if self.mode == "outdated" else "done"
        return True, why


class ItemPages:
    """Pages of items through an aiobotocore DynamoDB client."""

    def __init__(self, dynamodb: Any, table: str, selection: Selection, segments: int) -> None:
        self._ddb = dynamodb
        self._table = table
        self._selection = selection
        self.segments = 1 if selection.owner is not None else segments

    async def approximate_count(self) -> int | None:
        """DynamoDB's item count (refreshed about every six hours), for a scan's progress."""
        if self._selection.owner is not None:
            return None
        answer = await self._ddb.describe_table(TableName=self._table)
        count = answer.get("Table", {}).get("ItemCount")
        return int(count) if isinstance(count, int) else None

    async def pages(
        self, segment: int, start: dict[str, Any] | None
    ) -> AsyncIterator[tuple[list[dict[str, Any]], dict[str, Any] | None]]:
        """(items, position after them) from ``start``; the last page's position is None."""
        names = {f"#p{i}": name for i, name in enumerate(_PROJECTION)}
        request: dict[str, Any] = {
            "TableName": self._table,
            "ProjectionExpression": ", ".join(names),
            "ExpressionAttributeNames": names,
            "Limit": PAGE_ITEMS,
        }
        owner, since = self._selection.owner, self._selection.since
        if owner is not None:
            owner_name = next(key for key, name in names.items() if name == "owner")
            created = next(key for key, name in names.items() if name == "created_at")
            condition = f"{owner_name} = :owner"
            values: dict[str, Any] = {":owner": owner}
            if since is not None:
                condition += f" AND {created} >= :since"
                values[":since"] = since
            request.update(
                IndexName=OWNER_INDEX,
                KeyConditionExpression=condition,
                ExpressionAttributeValues=_encode(values),
            )
        else:
            request.update(Segment=segment, TotalSegments=self.segments)
        position = start
        while True:
            if position is not None:
                request["ExclusiveStartKey"] = position
            if owner is not None:
                answer = await self._ddb.query(**request)
            else:
                answer = await self._ddb.scan(**request)
            position = answer.get("LastEvaluatedKey") or None
            items = [_decode(raw) for raw in answer.get("Items", [])]
            # The table's records that are not media (the stuck check's lease) are no items.
            media = [i for i in items if not str(i["media_id"]).startswith(RESERVED_KEY_PREFIX)]
            yield media, position
            if position is None:
                return
