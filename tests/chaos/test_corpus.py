"""The chaos corpus ends as it says without any chaos, so what a chaos run finds is the chaos."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from mediamill_core.settings import Settings
from mediamill_testkit.client import raw_item
from mediamill_testkit.stages import CRASH_MARKER, CrashStage
from stages.photo.stage import ThumbnailStage
from stages.probe.stage import ProbeStage
from stages.video.stage import TranscodeStage
from tests.chaos.corpus import bad_samples, good_samples, make_corpus
from tests.chaos.stack import UploadClient
from worker.consumer import Worker
from worker.dev.devstack import Stack
from worker.publish import PublishStage
from worker.registry import LoadedStage, StageRegistry, instantiate

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_every_sample_ends_as_expected_and_only_the_killer_is_marked(
    settings: Settings, stack: Stack, dynamodb: Any, tmp_path: Path
) -> None:
    corpus = good_samples(tmp_path) + bad_samples(tmp_path)
    assert not any(CRASH_MARKER in sample.path.read_bytes() for sample in corpus)
    uploader = UploadClient(stack)
    ids = {uploader.upload(sample, "alice"): sample for sample in corpus}

    # The chaos workers' stages, the crash stage among them (no upload here carries its marker).
    stages = (ProbeStage, ThumbnailStage, TranscodeStage, CrashStage, PublishStage)
    registry = StageRegistry([LoadedStage(stage=instantiate(c, None, c.name)) for c in stages])
    await Worker(settings, registry, burst=True).run()

    for media_id, sample in ids.items():
        item = raw_item(dynamodb, stack.names.table, media_id)
        assert item is not None
        assert item["status"] == sample.expect, (sample.name, item.get("error"))
        if sample.expect == "FAILED":
            assert item["error"], sample.name
            assert item["error_retryable"] is False, sample.name  # the media's fault, not ours


def test_a_corpus_mixes_every_sample_and_puts_the_killer_early(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path, 30, random.Random(5))
    names = {sample.name for sample in corpus}
    kinds = good_samples(tmp_path) + bad_samples(tmp_path)
    assert {sample.name for sample in kinds} | {"killer.png"} == names
    assert [sample.killer for sample in corpus].count(True) == 1
    assert corpus[2].killer
    assert sum(sample.expect == "FAILED" for sample in corpus) >= 6
    assert make_corpus(tmp_path, 30, random.Random(5)) == corpus
    with pytest.raises(ValueError, match="at least"):
        make_corpus(tmp_path, 5, random.Random(5))
