"""The demo's throughput: from the items' own timestamps, first upload to last READY."""

from __future__ import annotations

import pytest

from worker.dev.throughput import Throughput, measure


def _item(status: str, kind: str | None, created: str, updated: str) -> dict[str, object]:
    return {"status": status, "kind": kind, "created_at": created, "updated_at": updated}


def test_the_window_runs_from_the_first_upload_to_the_last_ready() -> None:
    items = [
        _item("READY", "image", "2026-01-05T10:00:01.000Z", "2026-01-05T10:00:03.500Z"),
        _item("READY", "video", "2026-01-05T10:00:00.250Z", "2026-01-05T10:00:06.000Z"),
        _item("READY", "image", "2026-01-05T10:00:02.000Z", "2026-01-05T10:00:04.250Z"),
        # FAILED: its upload opens the window like any other, but it is not delivered, and its
        # later write does not stretch the window.
        _item("FAILED", "image", "2026-01-05T10:00:00.000Z", "2026-01-05T10:00:09.000Z"),
        {"status": "REJECTED"},  # refused before the API made an item: no timestamps at all
    ]

    measured = measure(items)

    assert measured == Throughput(photos=2, videos=1, media=3, seconds=6.0)
    assert measured.per_second(measured.photos) == pytest.approx(2 / 6)
    assert measured.describe() == (
        "throughput: 2 photos, 1 video (3 READY) in 6.00 s from the first upload to the last "
        "READY: 0.33 photos/s, 0.17 videos/s, 0.50 media/s"
    )


def test_ready_items_of_other_kinds_count_as_media_only() -> None:
    items = [
        _item("READY", "image", "2026-01-05T23:59:59.500Z", "2026-01-06T00:00:00.500Z"),
        _item("READY", "audio", "2026-01-05T23:59:59.900Z", "2026-01-06T00:00:01.500Z"),
    ]

    assert measure(items) == Throughput(photos=1, videos=0, media=2, seconds=2.0)


def test_nothing_ready_measures_nothing() -> None:
    assert measure([]) is None
    assert measure([_item("FAILED", "image", "2026-01-05T10:00:00.000Z", "x")]) is None


def test_a_window_of_no_length_has_no_rate() -> None:
    stamp = "2026-01-05T10:00:00.000Z"
    measured = measure([_item("READY", "image", stamp, stamp)])

    assert measured is not None
    assert measured.per_second(1) is None
    assert "- photos/s" in measured.describe()
