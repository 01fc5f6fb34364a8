"""The backfill lane's settings: optional, and a reservation that leaves fresh uploads a slot."""

from __future__ import annotations

import pytest

from mediamill_core.settings import SettingsError, load_settings


def test_no_backfill_queue_and_no_reserved_slot_by_default() -> None:
    settings = load_settings()
    assert settings.backfill_queue_url is None
    assert settings.backfill_reserved_slots == 0


def test_reserved_slots_must_leave_fresh_uploads_a_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIAMILL_CONCURRENCY", "4")
    monkeypatch.setenv("MEDIAMILL_BACKFILL_RESERVED_SLOTS", "4")
    with pytest.raises(SettingsError, match=r"BACKFILL_RESERVED_SLOTS \(4\) must be below"):
        load_settings()
    monkeypatch.setenv("MEDIAMILL_BACKFILL_RESERVED_SLOTS", "3")
    assert load_settings().backfill_reserved_slots == 3
    monkeypatch.setenv("MEDIAMILL_BACKFILL_RESERVED_SLOTS", "-1")
    with pytest.raises(SettingsError, match="MEDIAMILL_BACKFILL_RESERVED_SLOTS"):
        load_settings()
