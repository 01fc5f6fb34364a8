"""PATCH /media/{id}: title, description and album; null clears; validated; owner only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mediamill_core.settings import Settings
from mediamill_testkit.client import raw_item

Call = Callable[..., tuple[int, dict[str, str], Any]]


def test_sets_fields_and_answers_the_view(
    call: Call, put_ready: Any, dynamodb: Any, settings: Settings
) -> None:
    media_id, _ = put_ready()
    edit = {"title": "Beach", "description": "Day one.\nSunny.", "album": "Holidays"}
    status, _, body = call("PATCH", f"/media/{media_id}", body=edit)

    assert status == 200
    assert (body["title"], body["description"], body["album"]) == tuple(edit.values())
    assert body["renditions"]  # the full view, URLs included
    stored = raw_item(dynamodb, settings.table, media_id)
    assert stored is not None
    assert stored["title"] == "Beach"
    assert stored["album"] == "Holidays"
    assert stored["updated_at"] > "2024-06-01T10:00:05.250Z"
    assert stored["status"] == "READY"


def test_null_clears_and_absent_keeps(
    call: Call, put_ready: Any, dynamodb: Any, settings: Settings
) -> None:
    media_id, _ = put_ready(title="Old title")
    status, _, body = call("PATCH", f"/media/{media_id}", body={"album": None})
    assert status == 200
    assert body["album"] is None
    assert body["title"] == "Old title"
    stored = raw_item(dynamodb, settings.table, media_id)
    assert stored is not None
    assert "album" not in stored
    assert stored["title"] == "Old title"


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        ({}, "send at least one of title, description, album"),
        ({"title": ""}, "title"),
        ({"title": "x" * 201}, "at most 200"),
        ({"title": "a\nb"}, "title: must not contain control characters"),
        ({"title": "a\x00b"}, "control characters"),
        ({"title": "evil\u202etxt"}, "control characters"),
        ({"description": "x" * 2001}, "at most 2000"),
        ({"description": "bell\x07"}, "description: must not contain control characters"),
        ({"album": "a\tb"}, "album: must not contain control characters"),
        ({"album": "x" * 129}, "at most 128"),
        ({"album": 5}, "album: must be a string"),
        ({"owner": "mallory"}, "owner: is not an accepted field"),
        ({"status": "READY"}, "status: is not an accepted field"),
    ],
)
def test_invalid_edit_is_400_and_changes_nothing(
    call: Call,
    put_ready: Any,
    dynamodb: Any,
    settings: Settings,
    edit: dict[str, Any],
    reason: str,
) -> None:
    media_id, _ = put_ready()
    before = raw_item(dynamodb, settings.table, media_id)
    status, _, body = call("PATCH", f"/media/{media_id}", body=edit)
    assert status == 400
    assert reason in body["error"]["message"]
    assert raw_item(dynamodb, settings.table, media_id) == before


def test_missing_or_deleting_item_is_404_and_not_created(
    call: Call, put_ready: Any, dynamodb: Any, settings: Settings
) -> None:
    media_id, _ = put_ready(status="DELETING")
    assert call("PATCH", f"/media/{media_id}", body={"title": "x"})[0] == 404
    assert raw_item(dynamodb, settings.table, media_id)["status"] == "DELETING"  # type: ignore[index]

    ghost = "0" * 32
    assert call("PATCH", f"/media/{ghost}", body={"title": "x"})[0] == 404
    assert raw_item(dynamodb, settings.table, ghost) is None
