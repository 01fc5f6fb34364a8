"""One conditional write to the media table, the building block of every worker write."""

from __future__ import annotations

from typing import Any

from mediamill_core.items import decode as _decode
from mediamill_core.items import encode as _encode


class TableWrites:
    """The media table through an aiobotocore DynamoDB client: consistent reads, UpdateItem."""

    def __init__(self, dynamodb: Any, table: str, *, event_lock_seconds: float = 60.0) -> None:
        self._ddb = dynamodb
        self._table = table
        self._event_lock_seconds = event_lock_seconds

    async def get(self, media_id: str) -> dict[str, Any] | None:
        response = await self._ddb.get_item(
            TableName=self._table, Key=_encode({"media_id": media_id}), ConsistentRead=True
        )
        item = response.get("Item")
        return _decode(item) if item else None

    async def _update(
        self,
        media_id: str,
        *,
        sets: dict[str, Any],
        removes: tuple[str, ...] = (),
        counters: tuple[str, ...] = (),
        condition: str,
        names: dict[str, str] | None = None,
        values: dict[str, Any] | None = None,
        applied: bool = False,
    ) -> dict[str, Any]:
        """One conditional UpdateItem; raises ClientError (conditional failures included).

        ``counters`` are attributes the write adds one to (absent counts as 0). Answers with the
        item as written: read back (``ALL_NEW``), or, when ``applied``, the item before the write
        (``ALL_OLD``) with the write applied to it here, which spares reading back large values
        just sent (a READY write's metadata and labels cost more to parse than to apply).
        """
        all_names = dict(names or {})
        all_values = dict(values or {})
        assignments = [
            f"#c{index} = if_not_exists(#c{index}, :c_zero) + :c_one"
            for index in range(len(counters))
        ]
        for index, name in enumerate(counters):
            all_names[f"#c{index}"] = name
        if counters:
            all_values.update({":c_zero": 0, ":c_one": 1})
        for index, (name, value) in enumerate(sets.items()):
            all_names[f"#s{index}"] = name
            all_values[f":s{index}"] = value
            assignments.append(f"#s{index} = :s{index}")
        expression = "SET " + ", ".join(assignments)
        removed = [name for name in removes if name not in sets]
        if removed:
            for index, name in enumerate(removed):
                all_names[f"#r{index}"] = name
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(removed)))
        encoded = _encode(all_values)
        response = await self._ddb.update_item(
            TableName=self._table,
            Key=_encode({"media_id": media_id}),
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeNames=all_names,
            ExpressionAttributeValues=encoded,
            ReturnValues="ALL_OLD" if applied else "ALL_NEW",
        )
        if not applied:
            return _decode(response["Attributes"])
        before = _decode(response.get("Attributes") or {})
        # The values as DynamoDB stores them (the encoded form read back: 1.0 is 1, a tuple a list).
        written = _decode({name: encoded[f":s{i}"] for i, name in enumerate(sets)})
        item = {name: value for name, value in before.items() if name not in removed}
        item.update(written)
        for name in counters:
            item[name] = int(before.get(name) or 0) + 1
        return item
