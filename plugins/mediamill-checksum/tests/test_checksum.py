"""The checksum stage: digests, cancellation, declared options and discovery."""

from __future__ import annotations

import hashlib
import os
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from pydantic import ValidationError

from mediamill_checksum import ChecksumOptions, ChecksumStage
from stages import Job, JobCancelled, StageOptions

CHUNK = 4096


def make_job(path: Path, options: StageOptions) -> Job:
    return Job.standalone(path, path.parent, options=options)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, 3 * CHUNK + 17])
def test_digest_matches_hashlib(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "original"
    path.write_bytes(data)
    options = ChecksumOptions(chunk_bytes=CHUNK)
    result = ChecksumStage(options).run_sync(make_job(path, options))
    assert result.metadata == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": size}
    assert result.kind is None  # the probe decides the kind, not this stage


def test_cancelled_job_stops(tmp_path: Path) -> None:
    path = tmp_path / "original"
    path.write_bytes(b"x" * (2 * CHUNK))
    options = ChecksumOptions(chunk_bytes=CHUNK)
    job = make_job(path, options)
    job.cancelled.set()
    with pytest.raises(JobCancelled):
        ChecksumStage(options).run_sync(job)


def test_options_are_declared() -> None:
    assert ChecksumStage.Options is ChecksumOptions
    assert ChecksumOptions().chunk_bytes == 1024 * 1024
    with pytest.raises(ValidationError):
        ChecksumStage.Options(bogus=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        ChecksumOptions(chunk_bytes=100)


def test_declares_an_optional_cpu_bound_stage() -> None:
    assert (ChecksumStage.name, ChecksumStage.version) == ("checksum", "1.0.0")
    assert ChecksumStage.optional
    assert ChecksumStage.cpu_bound
    assert ChecksumStage.requires == ()


def test_entry_point_is_discoverable_once_installed() -> None:
    found = {point.name: point for point in entry_points(group="mediamill.stages")}
    assert "checksum" in found, "install with: pip install ./plugins/mediamill-checksum"
    assert found["checksum"].load() is ChecksumStage
