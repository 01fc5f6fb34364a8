"""The worker's task definition against the worker's own settings and the queue it consumes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from mediamill_core.settings import ECS_MAX_STOP_TIMEOUT, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "ecs" / "Dockerfile"
# Variables that are not mediamill settings, each set for a reason the template's comment gives.
FOREIGN_VARIABLES = {"TMPDIR"}  # libvips' and Python's temporary files, onto the spool volume
# The task's disk also holds the images' layers (the worker's, the collector's) and the file
# system's own overhead.
IMAGES_AND_SYSTEM_BYTES = 3 * 1024**3
# Each lane's queue and its dead-letter queue.
LANES = pytest.mark.parametrize(
    ("queue", "dead_letters"),
    [("MediaQueue", "MediaDeadLetterQueue"), ("BackfillQueue", "BackfillDeadLetterQueue")],
)


def _worker_settings(template: Any, monkeypatch: pytest.MonkeyPatch, **parameters: str) -> Settings:
    for name, value in template.environment("worker").items():
        monkeypatch.setenv(name, str(template.resolve(value, **parameters)))
    return load_settings()


def test_every_variable_is_a_setting_the_worker_accepts(
    template: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = template.environment("worker")
    names = set(environment) - FOREIGN_VARIABLES
    assert all(name.startswith("MEDIAMILL_") for name in names), names
    unknown = {
        name
        for name in names
        if name.removeprefix("MEDIAMILL_").lower() not in Settings.model_fields
    }
    assert not unknown, f"not settings of mediamill_core.settings.Settings: {unknown}"
    settings = _worker_settings(template, monkeypatch)
    # Literals arrive as the worker reads them: nothing silently coerced into something else.
    for name, value in environment.items():
        if name.startswith("MEDIAMILL_") and isinstance(value, str):
            parsed = getattr(settings, name.removeprefix("MEDIAMILL_").lower())
            assert _reads_as(parsed, value), f"{name}={value!r} reads as {parsed!r}"


def _reads_as(parsed: Any, literal: str) -> bool:
    if isinstance(parsed, bool):
        return str(parsed).lower() == literal.lower()
    if isinstance(parsed, int | float):
        return float(parsed) == float(literal)
    return str(parsed).lower() == literal.lower()


def test_the_worker_gets_every_resource_it_names(template: Any) -> None:
    environment = template.environment("worker")
    assert environment["MEDIAMILL_ORIGINALS_BUCKET"] == {"Ref": "OriginalsBucket"}
    assert environment["MEDIAMILL_RENDITIONS_BUCKET"] == {"Ref": "RenditionsBucket"}
    assert environment["MEDIAMILL_TABLE"] == {"Ref": "MediaTable"}
    assert environment["MEDIAMILL_QUEUE_URL"] == {"Ref": "MediaQueue"}
    assert environment["MEDIAMILL_BACKFILL_QUEUE_URL"] == {"Ref": "BackfillQueue"}
    assert environment["MEDIAMILL_MEDIA_TOPIC_ARN"] == {"Ref": "MediaEventsTopic"}
    assert environment["MEDIAMILL_REGION"] == {"Ref": "AWS::Region"}
    assert environment["MEDIAMILL_LOG_FORMAT"] == "json"


def test_stop_timeout_leaves_room_for_the_drain_and_the_stage_grace(
    template: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop_timeout = template.container("worker")["StopTimeout"]
    settings = _worker_settings(template, monkeypatch)
    assert stop_timeout <= ECS_MAX_STOP_TIMEOUT  # Fargate's limit; cfn-lint does not check it
    assert stop_timeout > settings.drain_seconds + settings.stage_grace_seconds


@LANES
def test_the_queue_and_the_worker_share_the_visibility_timeout(
    template: Any, monkeypatch: pytest.MonkeyPatch, queue: str, dead_letters: str
) -> None:
    queue = template.properties(queue)
    variable = template.environment("worker")["MEDIAMILL_VISIBILITY_TIMEOUT"]
    assert queue["VisibilityTimeout"] == variable  # the same expression: equal for any value
    parameter = template.parameters["VisibilityTimeout"]
    for value in (parameter["MinValue"], parameter["Default"], parameter["MaxValue"]):
        settings = _worker_settings(template, monkeypatch, VisibilityTimeout=str(value))
        assert settings.visibility_timeout == int(
            template.resolve(queue["VisibilityTimeout"], VisibilityTimeout=str(value))
        )


@LANES
def test_the_redrive_and_the_worker_share_max_receive_count(
    template: Any, monkeypatch: pytest.MonkeyPatch, queue: str, dead_letters: str
) -> None:
    redrive = template.properties(queue)["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [dead_letters, "Arn"]}
    variable = template.environment("worker")["MEDIAMILL_MAX_RECEIVE_COUNT"]
    assert redrive["maxReceiveCount"] == variable
    parameter = template.parameters["MaxReceiveCount"]
    # SQS refuses more than 1000; cfn-lint does not check it.
    assert 1 <= parameter["MinValue"] <= parameter["Default"] <= parameter["MaxValue"] <= 1000
    for value in (parameter["MinValue"], parameter["MaxValue"]):
        settings = _worker_settings(template, monkeypatch, MaxReceiveCount=str(value))
        assert settings.max_receive_count == value


@LANES
def test_the_dead_letter_queue_keeps_messages_longer_than_the_queue(
    template: Any, queue: str, dead_letters: str
) -> None:
    kept = template.properties(queue)["MessageRetentionPeriod"]
    kept_dead = template.properties(dead_letters)["MessageRetentionPeriod"]
    # A message's age carries over into the DLQ: a shorter retention there could drop it at once.
    assert kept_dead > kept


@LANES
def test_both_lanes_are_encrypted_and_long_polled_alike(
    template: Any, queue: str, dead_letters: str
) -> None:
    for name in (queue, dead_letters):
        assert template.properties(name)["SqsManagedSseEnabled"] is True, name
    assert template.properties(queue)["ReceiveMessageWaitTimeSeconds"] == 20
    assert template.resolve(template.properties(queue)["QueueName"]).startswith("mediamill-")


def test_only_the_media_queue_hears_from_the_uploads_topic(template: Any) -> None:
    """The backfill lane is fed by our own command only: an upload reaches a worker once."""
    endpoints = [props["Endpoint"] for props in map(template.properties, _subscriptions(template))]
    assert endpoints == [{"Fn::GetAtt": ["MediaQueue", "Arn"]}]
    policies = template.of_type("AWS::SQS::QueuePolicy")
    assert [template.properties(name)["Queues"] for name in policies] == [[{"Ref": "MediaQueue"}]]


def _subscriptions(template: Any) -> list[str]:
    return [
        name
        for name in template.of_type("AWS::SNS::Subscription")
        if template.properties(name)["Protocol"] == "sqs"
    ]


def test_reserved_backfill_slots_leave_fresh_uploads_a_slot(
    template: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = template.environment("worker")
    assert environment["MEDIAMILL_BACKFILL_RESERVED_SLOTS"] == {"Ref": "BackfillReservedSlots"}
    parameter = template.parameters["BackfillReservedSlots"]
    assert parameter["Default"] == 0  # fresh uploads always first unless an operator says so
    for value in (parameter["MinValue"], parameter["MaxValue"]):
        # The worker accepts every value the parameter does (it refuses the concurrency or more).
        settings = _worker_settings(template, monkeypatch, BackfillReservedSlots=str(value))
        assert settings.backfill_reserved_slots == value
    assert parameter["MaxValue"] == settings.concurrency - 1


def test_the_root_is_read_only_and_the_spool_is_the_volume(
    template: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = template.container("worker")
    assert worker["ReadonlyRootFilesystem"] is True
    mounts = {mount["ContainerPath"]: mount for mount in worker["MountPoints"]}
    settings = _worker_settings(template, monkeypatch)
    assert str(settings.spool_dir) in mounts
    assert mounts[str(settings.spool_dir)]["ReadOnly"] is False
    assert template.resolve(template.environment("worker")["TMPDIR"]) == str(settings.spool_dir)
    volumes = {volume["Name"] for volume in template.properties("WorkerTaskDefinition")["Volumes"]}
    assert {mount["SourceVolume"] for mount in mounts.values()} <= volumes


def test_the_task_disk_holds_the_spool_budget(
    template: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _worker_settings(template, monkeypatch)
    disk = template.properties("WorkerTaskDefinition")["EphemeralStorage"]["SizeInGiB"] * 1024**3
    assert disk >= settings.spool_budget_bytes + IMAGES_AND_SYSTEM_BYTES


def test_the_worker_runs_as_a_user_and_checks_its_health(template: Any) -> None:
    worker = template.container("worker")
    user = str(worker["User"]).split(":")
    assert user[0] not in ("0", "root")
    assert user[-1] not in ("0", "root")
    assert worker["HealthCheck"]["Command"] == ["CMD", "mediamill", "health"]
    # ECS's check gives up after its timeout; `mediamill health` answers well within 5 s.
    assert worker["HealthCheck"]["Timeout"] >= 5


def test_fargate_spot_can_run_the_task(template: Any) -> None:
    task = template.properties("WorkerTaskDefinition")
    assert task["RuntimePlatform"]["CpuArchitecture"] == "X86_64"  # Spot is x86_64 only
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    strategy = {
        entry["CapacityProvider"]: entry
        for entry in template.properties("WorkerService")["CapacityProviderStrategy"]
    }
    assert strategy["FARGATE"]["Base"] == 1
    assert strategy["FARGATE_SPOT"]["Weight"] > strategy["FARGATE"]["Weight"]


def test_the_image_matches_the_task_definition(template: Any) -> None:
    """The image's user owns the spool, which ECS copies onto the volume from the image's VOLUME."""
    if not DOCKERFILE.exists():
        pytest.skip("deploy/ecs/Dockerfile is not in this tree")
    text = DOCKERFILE.read_text()
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users, "the image names no USER"
    assert users[-1] == template.container("worker")["User"]
    volumes = " ".join(re.findall(r"^VOLUME\s+(.+)$", text, flags=re.MULTILINE))
    for mount in template.container("worker")["MountPoints"]:
        assert mount["ContainerPath"] in volumes, (
            f"the image declares no VOLUME {mount['ContainerPath']}"
        )
