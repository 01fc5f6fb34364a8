"""The tagging stage through the real botocore client against a local Rekognition endpoint."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from fractions import Fraction
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import av
import pytest
import pyvips
import structlog
from prometheus_client import REGISTRY
from structlog.testing import LogCapture

from mediamill_core.payloads import media_event
from mediamill_core.settings import Settings, load_settings
from mediamill_testkit.client import Uploader, drain_events, queue_counts, raw_item
from mediamill_testkit.rekognition import (
    BAD_FORMAT,
    DENIED,
    SERVER_ERROR,
    THROTTLED,
    RekognitionServer,
    Reply,
    error,
)
from stages import (
    Job,
    MediaKind,
    MediaSource,
    Rendition,
    Stage,
    StageContext,
    StageOptions,
    StageResult,
    TransientError,
)
from stages.photo.stage import ThumbnailStage
from stages.probe.stage import ProbeStage
from stages.tagging.stage import TaggingOptions, TaggingStage
from stages.video.stage import TranscodeStage
from worker import metrics
from worker.aws import AwsClients, open_clients
from worker.consumer import Worker
from worker.dev.devstack import Stack
from worker.dev.samples import write_png, write_video
from worker.publish import PublishStage
from worker.registry import LoadedStage, RegistryError, StageRegistry, instantiate

# DetectLabels as the developer guide shows it (labels model 3.0: aliases and categories).
LABELS = {
    "LabelModelVersion": "3.0",
    "Labels": [
        {
            "Name": "Car",
            "Confidence": 97.281,
            "Instances": [
                {
                    "BoundingBox": {"Width": 0.31, "Height": 0.22, "Left": 0.41, "Top": 0.52},
                    "Confidence": 97.281,
                    "DominantColors": [],
                }
            ],
            "Parents": [{"Name": "Vehicle"}, {"Name": "Transportation"}],
            "Aliases": [{"Name": "Automobile"}],
            "Categories": [{"Name": "Vehicles and Automotive"}],
        },
        {
            "Name": "Person",
            "Confidence": 99.1274,
            "Instances": [],
            "Parents": [],
            "Aliases": [{"Name": "Human"}],
            "Categories": [{"Name": "Person Description"}],
        },
        {
            "Name": "Road",
            "Confidence": 71.5,
            "Instances": [],
            "Parents": [],
            "Aliases": [],
            "Categories": [{"Name": "Buildings and Architecture"}],
        },
    ],
}
TAGS = [
    {
        "name": "Person",
        "confidence": 99.13,
        "parents": [],
        "categories": ["Person Description"],
    },
    {
        "name": "Car",
        "confidence": 97.28,
        "parents": ["Vehicle", "Transportation"],
        "categories": ["Vehicles and Automotive"],
    },
    {
        "name": "Road",
        "confidence": 71.5,
        "parents": [],
        "categories": ["Buildings and Architecture"],
    },
]
# DetectModerationLabels, taxonomy version 7: a parent label is "" at the top level.
MODERATION = {
    "ModerationModelVersion": "7.0",
    "ModerationLabels": [
        {"Confidence": 92.3349, "Name": "Violence", "ParentName": "", "TaxonomyLevel": 1},
        {
            "Confidence": 79.0331,
            "Name": "Weapon Violence",
            "ParentName": "Violence",
            "TaxonomyLevel": 2,
        },
    ],
    "ContentTypes": [{"Confidence": 88.2, "Name": "Animated"}],
}
NOTHING_UNSAFE = {"ModerationModelVersion": "7.0", "ModerationLabels": [], "ContentTypes": []}


def labels(*pairs: tuple[str, float]) -> Reply:
    return Reply(body={"Labels": [{"Name": name, "Confidence": c} for name, c in pairs]})


def unsafe(*pairs: tuple[str, float]) -> Reply:
    found = [{"Name": name, "Confidence": c, "ParentName": ""} for name, c in pairs]
    return Reply(body={"ModerationLabels": found})


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def rekognition() -> Iterator[RekognitionServer]:
    server = RekognitionServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def write_picture(path: Path, width: int, height: int, *, noise: bool = False) -> Path:
    """A real picture encoded by libvips (JPEG or PNG by suffix); noise does not compress."""
    if noise:
        bands = [pyvips.Image.gaussnoise(width, height, sigma=90) for _ in range(3)]
        image = bands[0].bandjoin(bands[1:])
    else:
        xy = pyvips.Image.xyz(width, height) * [255 / width, 255 / height]
        image = xy.bandjoin(128)
    image.cast("uchar").copy(interpretation="srgb").write_to_file(str(path))
    return path


def preview(path: Path) -> Rendition:
    header = pyvips.Image.new_from_file(str(path))
    kind = "image/png" if path.suffix == ".png" else "image/jpeg"
    return Rendition("preview", path, kind, header.width, header.height)


def make_job(
    tmp_path: Path,
    *,
    kind: MediaKind = MediaKind.IMAGE,
    original: Path | None = None,
    renditions: dict[str, Rendition] | None = None,
    metadata: dict[str, Any] | None = None,
    log: Any = None,
) -> Job:
    original = original or write_picture(tmp_path / "original.jpg", 64, 48)
    return Job(
        source=MediaSource("m-1", "owner", "originals", "originals/m-1", "etag", 1),
        original=original,
        workdir=tmp_path,
        kind=kind,
        attempt=1,
        max_attempts=3,
        renditions=renditions if renditions is not None else {},
        metadata=metadata or {},
        options=TaggingOptions(),
        log=log or structlog.get_logger(),
    )


@pytest.fixture
async def aws(rekognition: RekognitionServer) -> AsyncIterator[AwsClients]:
    """The worker's own clients; only Rekognition's is used, at the local endpoint."""
    settings = load_settings(
        endpoint_url="http://127.0.0.1:9",
        rekognition_endpoint_url=rekognition.endpoint,
        aws_max_attempts=2,
    )
    async with open_clients(settings) as clients:
        yield clients


async def run_stage(aws: AwsClients, job: Job, **options: Any) -> StageResult:
    stage = instantiate(TaggingStage, options, "test")
    await stage.start(StageContext(settings=None, resources={"aws": aws}, log=job.log))
    job.options = stage.options
    return await stage.run(job)


def sent_picture(data: bytes) -> pyvips.Image:
    image = pyvips.Image.new_from_buffer(data, "")
    assert image.get("vips-loader") in ("jpegload_buffer", "pngload_buffer")
    assert len(data) <= 5_000_000
    assert min(image.width, image.height) >= 80
    assert max(image.width, image.height) <= 10_000
    return image


# --- the contract ----------------------------------------------------------------------------


def test_declares_an_optional_stage_after_the_renditions() -> None:
    assert TaggingStage.name == "tagging"
    assert TaggingStage.optional
    assert not TaggingStage.cpu_bound
    assert set(TaggingStage.requires) == {"probe", "thumbnail", "transcode"}
    assert set(TaggingStage.kinds) == set(MediaKind)
    found = {point.name: point for point in entry_points(group="mediamill.stages")}
    assert found["tagging"].load() is TaggingStage


def test_the_documented_options_are_the_declared_ones() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "stages.md"
    section = doc.read_text().split("### `tagging`", 1)[1]
    section = section.split("\n### ", 1)[0].split("\n## ", 1)[0]  # up to the next section
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]+)` \|", section, flags=re.MULTILINE))
    # Options every stage takes (retry) are documented with the contract, not here.
    declared = {
        name: field
        for name, field in TaggingOptions.model_fields.items()
        if name not in StageOptions.model_fields
    }
    assert rows == {name: json.dumps(field.default) for name, field in declared.items()}


def test_undeclared_or_invalid_options_are_refused() -> None:
    with pytest.raises(RegistryError, match="bogus"):
        instantiate(TaggingStage, {"bogus": 1}, "test")
    with pytest.raises(RegistryError, match="max_labels"):
        instantiate(TaggingStage, {"max_labels": 0}, "test")


# --- photos ----------------------------------------------------------------------------------


async def test_photo_preview_is_sent_with_the_options_and_both_answers_parsed(
    tmp_path: Path, rekognition: RekognitionServer, aws: AwsClients
) -> None:
    rekognition.answer("DetectLabels", Reply(body=LABELS))
    rekognition.answer("DetectModerationLabels", Reply(body=MODERATION))
    jpeg = write_picture(tmp_path / "preview.jpg", 640, 480)
    job = make_job(tmp_path, renditions={"preview": preview(jpeg)})

    result = await run_stage(
        aws, job, min_confidence=62.5, max_labels=7, moderation_min_confidence=55.0
    )

    [detect] = rekognition.calls("DetectLabels")
    [moderate] = rekognition.calls("DetectModerationLabels")
    assert detect.body["MinConfidence"] == 62.5
    assert detect.body["MaxLabels"] == 7
    assert moderate.body["MinConfidence"] == 55.0
    # A preview within every limit travels as it is, byte for byte.
    assert detect.image == moderate.image == jpeg.read_bytes()
    assert (sent_picture(detect.image).width, sent_picture(detect.image).height) == (640, 480)

    assert result.warnings == []
    assert result.metadata["tags"] == TAGS
    assert result.metadata["moderation"] == {
        "status": "done",
        "labels": [
            {"name": "Violence", "confidence": 92.33, "parent": None},
            {"name": "Weapon Violence", "confidence": 79.03, "parent": "Violence"},
        ],
        "needs_review": True,
    }
    assert result.metadata["needs_review"] is True
    json.dumps(result.metadata)  # stored with the item as it is


@pytest.mark.parametrize(
    ("threshold", "answer", "expected"),
    [
        (92.0, MODERATION, True),  # 92.33 is above
        (92.5, MODERATION, False),  # nothing reaches it
        (1.0, NOTHING_UNSAFE, False),  # nothing found at all
    ],
)
async def test_needs_review_above_the_threshold_only(
    tmp_path: Path,
    rekognition: RekognitionServer,
    aws: AwsClients,
    threshold: float,
    answer: dict[str, Any],
    expected: bool,
) -> None:
    rekognition.answer("DetectLabels", Reply(body=LABELS))
    rekognition.answer("DetectModerationLabels", Reply(body=answer))
    jpeg = write_picture(tmp_path / "preview.jpg", 320, 240)
    job = make_job(tmp_path, renditions={"preview": preview(jpeg)})

    result = await run_stage(aws, job, review_threshold=threshold)

    assert result.metadata["needs_review"] is expected
    assert result.metadata["moderation"]["status"] == "done"
    assert result.metadata["moderation"]["needs_review"] is expected
    assert len(result.metadata["moderation"]["labels"]) == len(answer["ModerationLabels"])


async def test_max_labels_caps_the_tags_and_moderation_can_be_turned_off(
    tmp_path: Path, rekognition: RekognitionServer, aws: AwsClients
) -> None:
    rekognition.answer("DetectLabels", Reply(body=LABELS))
    jpeg = write_picture(tmp_path / "preview.jpg", 320, 240)
    job = make_job(tmp_path, renditions={"preview": preview(jpeg)})

    result = await run_stage(aws, job, max_labels=2, moderation=False)

    assert [tag["name"] for tag in result.metadata["tags"]] == ["Person", "Car"]
    assert rekognition.calls("DetectModerationLabels") == []
    assert "needs_review" not in result.metadata
    assert result.metadata["moderation"] == {"status": "off"}


@pytest.mark.parametrize(
    ("name", "width", "height", "noise", "sent_size"),
    [
        # Wider than Rekognition's 10,000 px: shrunk to 1440, then the short side back to 80.
        ("wide.png", 12_000, 300, False, (3200, 80)),
        # Within the sides but well over 5 MB as a PNG: re-encoded as a JPEG at 1440.
        ("noisy.png", 2400, 1600, True, (1440, 960)),
        # Under 80 px: upscaled so that the short side is 80.
        ("tiny.jpg", 40, 30, False, (107, 80)),
    ],
)
async def test_a_preview_outside_the_limits_is_re_encoded_within_them(
    tmp_path: Path,
    rekognition: RekognitionServer,
    aws: AwsClients,
    name: str,
    width: int,
    height: int,
    noise: bool,
    sent_size: tuple[int, int],
) -> None:
    rekognition.answer("DetectLabels", Reply(body=LABELS))
    rekognition.answer("DetectModerationLabels", Reply(body=NOTHING_UNSAFE))
    big = write_picture(tmp_path / name, width, height, noise=noise)
    if noise:
        assert big.stat().st_size > 5 * 1024 * 1024
    job = make_job(tmp_path, renditions={"preview": preview(big)})

    result = await run_stage(aws, job)

    [request] = rekognition.calls("DetectLabels")
    picture = sent_picture(request.image)
    assert picture.get("vips-loader") == "jpegload_buffer"
    assert (picture.width, picture.height) == sent_size
    assert result.metadata["tags"] == TAGS
    assert result.warnings == []


async def test_a_picture_too_narrow_for_any_size_is_skipped_with_a_warning(
    tmp_path: Path, rekognition: RekognitionServer, aws: AwsClients
) -> None:
    strip = write_picture(tmp_path / "strip.png", 2000, 10)
    job = make_job(tmp_path, renditions={"preview": preview(strip)})

    result = await run_stage(aws, job)

    assert rekognition.requests == []
    [warning] = result.warnings
    assert warning == (
        "preview not sent: a 2000x10 picture is too narrow for Rekognition "
        "(each side 80 to 10000 px)"
    )
    assert result.metadata == {"moderation": {"status": "failed", "reason": warning}}


async def test_a_photo_without_a_preview_is_skipped_with_a_warning(
    tmp_path: Path, rekognition: RekognitionServer, aws: AwsClients
) -> None:
    result = await run_stage(aws, make_job(tmp_path))

    assert rekognition.requests == []
    assert result.warnings == ["no preview rendition: the photo was not tagged"]
    reason = "no preview rendition: the photo was not tagged"
    assert result.metadata == {"moderation": {"status": "failed", "reason": reason}}


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        THROTTLED,
        error("ProvisionedThroughputExceededException", "Provisioned rate exceeded"),
        error("LimitExceededException", "Limit exceeded"),
        SERVER_ERROR,
    ],
    ids=["throttling", "throughput", "limit", "server-error"],
)
async def test_throttling_and_5xx_are_retried_by_botocore_then_transient(
    tmp_path: Path, rekognition: RekognitionServer, aws: AwsClients, reply: Reply
) -> None:
    rekognition.answer("DetectLabels", reply)
    jpeg = write_picture(tmp_path / "preview.jpg", 320, 240)
    job = make_job(tmp_path, renditions={"preview": preview(jpeg)})

    with pytest.raises(TransientError) as raised:
        await run_stage(aws, job, throttle_retry_seconds=20.0)

    # aws_max_attempts=2: botocore's standard mode tried once more before giving up.
    assert len(rekognition.calls("DetectLabels")) == 2
    assert raised.value.retry_after is not None
    assert 20.0 <= raised.value.retry_after <= 30.0
    assert reply.body["__type"] in str(raised.value)


async def test_the_services_retry_after_wins_and_a_retry_that_succeeds_is_enough(
    tmp_path: Path, rekognition: RekognitionServer, aws: AwsClients
) -> None:
    slow_down = error("ThrottlingException", "Rate exceeded", headers={"Retry-After": "7"})
    rekognition.answer("DetectLabels", slow_down)
    jpeg = write_picture(tmp_path / "preview.jpg", 320, 240)
    job = make_job(tmp_path, renditions={"preview": preview(jpeg)})
    with pytest.raises(TransientError) as raised:
        await run_stage(aws, job)
    assert raised.value.retry_after == 7.0

    rekognition.requests.clear()
    rekognition.script("DetectLabels", THROTTLED, Reply(body=LABELS))
    rekognition.answer("DetectModerationLabels", Reply(body=NOTHING_UNSAFE))
    result = await run_stage(aws, job)
    assert len(rekognition.calls("DetectLabels")) == 2
    assert result.metadata["tags"] == TAGS


async def test_a_picture_rekognition_refuses_is_a_warning_not_a_crash(
    tmp_path: Path, rekognition: RekognitionServer, aws: AwsClients
) -> None:
    rekognition.answer("DetectLabels", BAD_FORMAT)
    rekognition.answer("DetectModerationLabels", Reply(body=MODERATION))
    jpeg = write_picture(tmp_path / "preview.jpg", 320, 240)
    job = make_job(tmp_path, renditions={"preview": preview(jpeg)})

    result = await run_stage(aws, job)

    assert len(rekognition.calls("DetectLabels")) == 1  # a 400 is not retried
    assert rekognition.calls("DetectModerationLabels") == []  # it would refuse it too
    [warning] = result.warnings
    assert "DetectLabels: InvalidImageFormatException" in warning
    assert "the preview" in warning
    # Never a silent absence: the platform learns that this upload was not moderated.
    assert result.metadata == {"moderation": {"status": "failed", "reason": warning}}


async def test_no_access_to_moderation_keeps_the_tags_and_warns(
    tmp_path: Path, rekognition: RekognitionServer, aws: AwsClients
) -> None:
    rekognition.answer("DetectLabels", Reply(body=LABELS))
    rekognition.answer("DetectModerationLabels", DENIED)
    jpeg = write_picture(tmp_path / "preview.jpg", 320, 240)
    capture = LogCapture()
    log = structlog.wrap_logger(None, processors=[capture])
    job = make_job(tmp_path, renditions={"preview": preview(jpeg)}, log=log)

    result = await run_stage(aws, job)

    assert result.metadata["tags"] == TAGS
    assert "needs_review" not in result.metadata  # unknown, not "no"
    [warning] = result.warnings
    assert warning.startswith("DetectModerationLabels: AccessDeniedException")
    assert result.metadata["moderation"] == {"status": "failed", "reason": warning}
    [logged] = [e for e in capture.entries if e["event"] == "tagging_refused"]
    assert logged["log_level"] == "warning"
    assert logged["operation"] == "detect_moderation_labels"


# --- videos ----------------------------------------------------------------------------------


def write_keyframed_video(path: Path, *, seconds: int = 4, fps: int = 24, gop: int = 12) -> Path:
    """An H.264 MP4 with a keyframe every ``gop`` frames (0.5 s), so seeks land on known times."""
    with av.open(str(path), mode="w", format="mp4") as output:
        stream: Any = output.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.options = {
            "preset": "ultrafast",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0",
        }
        for index in range(seconds * fps):
            x = pyvips.Image.xyz(320, 240)[0] * (255 / 320) + index
            picture = (x % 256).bandjoin([128, 64]).cast("uchar")
            array = picture.numpy()
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return path


async def test_video_labels_from_poster_and_keyframes_are_merged(
    tmp_path: Path, rekognition: RekognitionServer, aws: AwsClients
) -> None:
    video = write_keyframed_video(tmp_path / "clip.mp4")
    poster = write_picture(tmp_path / "poster.jpg", 320, 240)
    # Poster, then keyframes at 0.5, 1.5, 2.5 and 3.5 s (the middle of each quarter).
    rekognition.script(
        "DetectLabels",
        labels(("Dog", 88.0)),
        labels(("Person", 90.0), ("Car", 60.0)),
        labels(("Person", 95.5), ("Tree", 70.0)),
        BAD_FORMAT,
        labels(("Person", 80.0), ("Car", 75.25)),
    )
    rekognition.script(
        "DetectModerationLabels",
        unsafe(),
        unsafe(("Violence", 70.0)),
        unsafe(("Violence", 85.0)),
        unsafe(),
    )
    job = make_job(
        tmp_path,
        kind=MediaKind.VIDEO,
        original=video,
        renditions={"preview": preview(poster)},
        metadata={"format": "mp4", "rotation": 90},
    )

    result = await run_stage(aws, job, video_keyframes=4)

    sent = rekognition.calls("DetectLabels")
    assert len(sent) == 5
    assert sent[0].image == poster.read_bytes()
    for request in sent[1:]:
        frame = sent_picture(request.image)
        assert frame.get("vips-loader") == "jpegload_buffer"
        assert (frame.width, frame.height) == (240, 320)  # turned upright
    assert len({request.image for request in sent}) == 5  # distinct keyframes
    assert result.metadata["tags"] == [
        {
            "name": "Person",
            "confidence": 95.5,
            "parents": [],
            "categories": [],
            "times": [0.5, 1.5, 3.5],
        },
        {"name": "Dog", "confidence": 88.0, "parents": [], "categories": []},
        {"name": "Car", "confidence": 75.25, "parents": [], "categories": [], "times": [0.5, 3.5]},
        {"name": "Tree", "confidence": 70.0, "parents": [], "categories": [], "times": [1.5]},
    ]
    assert result.metadata["moderation"] == {
        "status": "done",
        "labels": [{"name": "Violence", "confidence": 85.0, "parent": None, "times": [0.5, 1.5]}],
        "needs_review": True,
    }
    assert result.metadata["needs_review"] is True
    [warning] = result.warnings
    assert "InvalidImageFormatException" in warning
    assert "the frame at 2.5 s" in warning


async def test_a_video_without_a_poster_still_gets_keyframe_labels(
    tmp_path: Path, rekognition: RekognitionServer, aws: AwsClients
) -> None:
    video = write_keyframed_video(tmp_path / "clip.mp4", seconds=2)
    rekognition.answer("DetectLabels", labels(("Sky", 77.0)))
    rekognition.answer("DetectModerationLabels", unsafe())
    job = make_job(tmp_path, kind=MediaKind.VIDEO, original=video, metadata={"format": "mp4"})

    result = await run_stage(aws, job, video_keyframes=2)

    assert len(rekognition.calls("DetectLabels")) == 2
    assert result.metadata["tags"] == [
        {"name": "Sky", "confidence": 77.0, "parents": [], "categories": [], "times": [0.5, 1.5]}
    ]
    assert result.metadata["needs_review"] is False


# --- the whole flow --------------------------------------------------------------------------


class PreviewStandIn(Stage):
    """Stands in for the thumbnail stage: a 1440 px JPEG preview encoded with libvips."""

    name = "thumbnail"
    version = "0.0.0"
    kinds = frozenset({MediaKind.IMAGE})
    requires = ("probe",)
    cpu_bound = True

    def run_sync(self, job: Job) -> StageResult:
        target = job.workdir / "preview.jpg"
        image = pyvips.Image.thumbnail(str(job.original), 1440, size="down")
        image.jpegsave(str(target), Q=80)
        rendition = Rendition("preview", target, "image/jpeg", image.width, image.height)
        return StageResult(renditions=[rendition])


class PosterStandIn(Stage):
    """Stands in for the transcode stage, which a photo does not need."""

    name = "transcode"
    version = "0.0.0"
    kinds = frozenset({MediaKind.VIDEO})
    requires = ("probe",)

    async def run(self, job: Job) -> StageResult:
        raise AssertionError("a photo never reaches transcode")


def worker_settings(
    stack_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    rekognition: RekognitionServer,
    **env: str,
) -> Settings:
    """The worker's settings for the test stack, with Rekognition served by ``rekognition``."""
    env = {**stack_env, "MEDIAMILL_REKOGNITION_ENDPOINT_URL": rekognition.endpoint, **env}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.endpoint_url is not None
    rekognition.reads_s3(settings.endpoint_url, settings.region)  # the stored preview, as AWS
    return settings


async def test_worker_tags_an_upload_and_its_event_carries_needs_review(
    stack_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    rekognition: RekognitionServer,
    stack: Stack,
    sqs: Any,
    dynamodb: Any,
    media_events: str,
    tmp_path: Path,
) -> None:
    settings = worker_settings(stack_env, monkeypatch, rekognition)
    rekognition.answer("DetectLabels", Reply(body=LABELS))
    rekognition.answer("DetectModerationLabels", Reply(body=MODERATION))
    media_id = Uploader(settings).upload(write_png(tmp_path / "photo.png", 160, 120))
    stages = (ProbeStage, PreviewStandIn, PosterStandIn, TaggingStage, PublishStage)
    registry = StageRegistry([LoadedStage(stage=cls(cls.Options())) for cls in stages])
    puts = metrics.aws_calls().get("s3.PutObject", 0)

    await Worker(settings, registry, burst=True).run()

    item = raw_item(dynamodb, stack.names.table, media_id)
    assert item is not None
    assert item["status"] == "READY"
    assert item["metadata"]["tags"] == TAGS
    assert item["metadata"]["needs_review"] is True
    assert item["metadata"]["moderation"]["status"] == "done"
    assert item["metadata"]["moderation"]["needs_review"] is True
    assert {s["name"]: s["outcome"] for s in item["stages"]}["tagging"] == "ok"
    [sent] = rekognition.calls("DetectLabels")
    assert sent_picture(sent.image).width == 160  # the stand-in's preview, never upscaled
    # Read from where publish stored it, and stored once: publish used that upload.
    preview_key = item["renditions"]["preview"]["key"]
    assert sent.s3_object == {"Bucket": stack.names.renditions_bucket, "Name": preview_key}
    assert "Bytes" not in sent.body["Image"]
    assert metrics.aws_calls()["s3.PutObject"] - puts == 1
    got = sqs.receive_message(QueueUrl=media_events, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    [event] = [json.loads(m["Body"]) for m in got["Messages"]]
    assert event["type"] == "media.processed"
    assert event["media_id"] == media_id
    assert event["needs_review"] is True


def test_the_event_carries_needs_review_only_when_moderation_ran() -> None:
    base = {"media_id": "m-1", "status": "READY", "renditions": {}}
    assert media_event({**base, "metadata": {"needs_review": False}})["needs_review"] is False
    assert media_event({**base, "metadata": {"needs_review": True}})["needs_review"] is True
    assert "needs_review" not in media_event({**base, "metadata": {"tags": []}})
    assert "needs_review" not in media_event(base)


async def test_an_unreadable_video_still_gets_its_poster_tagged(
    tmp_path: Path, rekognition: RekognitionServer, aws: AwsClients
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 64)
    poster = write_picture(tmp_path / "poster.jpg", 320, 240)
    rekognition.answer("DetectLabels", labels(("Sky", 77.0)))
    rekognition.answer("DetectModerationLabels", unsafe())
    job = make_job(
        tmp_path,
        kind=MediaKind.VIDEO,
        original=broken,
        renditions={"preview": preview(poster)},
        metadata={"format": "mp4"},
    )

    result = await run_stage(aws, job)

    assert [r.image for r in rekognition.calls("DetectLabels")] == [poster.read_bytes()]
    assert result.metadata["tags"] == [
        {"name": "Sky", "confidence": 77.0, "parents": [], "categories": []}
    ]
    [warning] = result.warnings
    assert warning.startswith("keyframes not read: ")


# --- moderation when the stage makes nothing -------------------------------------------------


def test_a_deferred_or_failed_stage_says_so_in_moderation_unless_it_is_off() -> None:
    stage = instantiate(TaggingStage, None, "test")
    assert stage.unfinished_metadata("deferred", "DetectLabels: throttled") == {
        "moderation": {"status": "deferred", "reason": "DetectLabels: throttled"}
    }
    assert stage.unfinished_metadata("failed", "KeyError: 'Labels'") == {
        "moderation": {"status": "failed", "reason": "KeyError: 'Labels'"}
    }
    off = instantiate(TaggingStage, {"moderation": False}, "test")
    assert off.unfinished_metadata("deferred", "throttled") == {"moderation": {"status": "off"}}


def stage_runs(stage: str, kind: str) -> float:
    labels = {"stage": stage, "kind": kind, "outcome": "ok"}
    return REGISTRY.get_sample_value("mediamill_stage_duration_seconds_count", labels) or 0.0


async def test_throttled_rekognition_defers_tagging_and_never_repeats_the_transcode(
    stack_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    rekognition: RekognitionServer,
    stack: Stack,
    sqs: Any,
    dynamodb: Any,
    media_events: str,
    tmp_path: Path,
) -> None:
    # botocore's own retries aside: the stage's budget is what is tested.
    settings = worker_settings(stack_env, monkeypatch, rekognition, MEDIAMILL_AWS_MAX_ATTEMPTS="1")
    rekognition.answer("DetectLabels", THROTTLED)
    clip = write_video(tmp_path / "clip.mp4", seconds=1.0)
    media_id = Uploader(settings).upload(clip, "video/mp4")
    options: dict[str, dict[str, Any]] = {
        "tagging": {"throttle_retry_seconds": 0.05, "retry": {"attempts": 3, "seconds": 30}}
    }
    stages = (ProbeStage, ThumbnailStage, TranscodeStage, TaggingStage, PublishStage)
    registry = StageRegistry(
        [LoadedStage(stage=instantiate(cls, options.get(cls.name), cls.name)) for cls in stages]
    )
    transcodes = stage_runs("transcode", "video")

    await Worker(settings, registry, burst=True).run()

    assert stage_runs("transcode", "video") == transcodes + 1  # once, on the first delivery
    assert len(rekognition.calls("DetectLabels")) == 3  # the budget's three tries
    item = raw_item(dynamodb, stack.names.table, media_id)
    assert item is not None
    assert item["status"] == "READY"
    outcomes = {s["name"]: s["outcome"] for s in item["stages"]}
    assert outcomes["transcode"] == "ok"
    assert outcomes["tagging"] == "deferred"
    moderation = item["metadata"]["moderation"]
    assert moderation["status"] == "deferred"
    assert moderation["reason"].startswith("deferred after 3 tries in ")
    assert "ThrottlingException" in moderation["reason"]
    assert "tags" not in item["metadata"]
    assert any(w.startswith("tagging: deferred after 3 tries") for w in item["warnings"])
    assert queue_counts(sqs, stack.queue_url) == (0, 0)
    [event] = drain_events(sqs, media_events)
    assert (event["type"], event["media_id"]) == ("media.processed", media_id)
