"""Stage discovery from entry points, the DAG checks, settings errors and `mediamill stages`."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import types
from importlib.metadata import EntryPoint, PackageNotFoundError, distribution
from importlib.metadata import version as dist_version

import pytest

from mediamill_core.settings import SQS_MAX_VISIBILITY, SettingsError, load_settings
from mediamill_testkit.stages import SleepyOptions, SleepyStage
from stages import Job, MediaKind, Stage, StageResult
from stages.probe.stage import ProbeStage
from worker.publish import PublishStage
from worker.registry import (
    ENTRY_POINT_GROUP,
    LoadedStage,
    RegistryError,
    StageRegistry,
    check_timing,
    discover,
)

PROBE = EntryPoint(name="probe", value="stages.probe.stage:ProbeStage", group=ENTRY_POINT_GROUP)
PUBLISH = EntryPoint(name="publish", value="worker.publish:PublishStage", group=ENTRY_POINT_GROUP)
SLEEPY = EntryPoint(
    name="sleepy", value="mediamill_testkit.stages:SleepyStage", group=ENTRY_POINT_GROUP
)


def point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


# --- small stages for the DAG checks -------------------------------------------------------


class _Async(Stage):
    version = "1.0.0"

    async def run(self, job: Job) -> StageResult:
        return StageResult()


class CycleA(_Async):
    name = "cycle-a"
    requires = ("cycle-b",)


class CycleB(_Async):
    name = "cycle-b"
    requires = ("cycle-a",)


class Final(_Async):
    name = "final"
    final = True
    timeout = 2.0


class NeedsFinal(_Async):
    name = "needs-final"
    requires = ("final",)


class Left(_Async):
    name = "left"
    requires = ("probe",)
    timeout = 10.0


class Right(_Async):
    name = "right"
    requires = ("probe",)
    timeout = 20.0


class Join(_Async):
    name = "join"
    requires = ("right", "left")
    timeout = 5.0


class Loose(_Async):
    name = "loose"
    timeout = 1.0


class NoRunSync(Stage):
    """cpu_bound, but only overrides the async run()."""

    name = "norunsync"
    version = "1.0.0"
    cpu_bound = True

    async def run(self, job: Job) -> StageResult:
        return StageResult()


def loaded(*classes: type[Stage]) -> list[LoadedStage]:
    return [LoadedStage(stage=cls(cls.Options())) for cls in classes]


@pytest.fixture
def fake_module(monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable module holding this file's odd stages, for entry points to name."""
    module = types.ModuleType("mm_registry_test_stages")
    module.NoRunSync = NoRunSync  # type: ignore[attr-defined]
    module.not_a_stage = object()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module.__name__


# --- discovery -----------------------------------------------------------------------------


def test_installed_entry_points_include_the_built_in_stages() -> None:
    found = {item.name: item for item in discover()}
    assert type(found["probe"].stage) is ProbeStage
    assert type(found["publish"].stage) is PublishStage
    for name in ("probe", "publish"):
        assert found[name].distribution == "mediamill"
        assert found[name].distribution_version == dist_version("mediamill")
    try:
        distribution("mediamill-checksum")
    except PackageNotFoundError:
        return  # the example plugin is not installed in this environment
    assert found["checksum"].distribution == "mediamill-checksum"


def test_enabled_list_limits_what_loads() -> None:
    found = discover(["publish", "probe"], found=[PROBE, PUBLISH, SLEEPY])
    assert [item.name for item in found] == ["publish", "probe"]
    assert found[0].entry_point == "worker.publish:PublishStage"


def test_duplicate_stage_name_is_refused_naming_both_origins() -> None:
    rival = point("probe", "mediamill_testkit.stages:SleepyStage")
    with pytest.raises(RegistryError, match="duplicate stage name 'probe'") as caught:
        discover(found=[PROBE, rival])
    assert "stages.probe.stage:ProbeStage" in str(caught.value)
    assert "mediamill_testkit.stages:SleepyStage" in str(caught.value)


def test_enabling_an_unknown_stage_is_refused() -> None:
    with pytest.raises(RegistryError, match="MEDIAMILL_STAGES") as caught:
        discover(["probe", "nonexistent", "publish"], found=[PROBE, PUBLISH])
    assert "nonexistent" in str(caught.value)
    assert "installed: probe, publish" in str(caught.value)


def test_requirement_not_enabled_is_refused() -> None:
    stages = discover(["sleepy", "publish"], found=[PROBE, PUBLISH, SLEEPY])
    with pytest.raises(RegistryError, match=r"'sleepy' requires 'probe'.*not installed or not"):
        StageRegistry(stages)


def test_cycle_is_refused_with_its_path() -> None:
    with pytest.raises(RegistryError, match="cycle: cycle-a -> cycle-b -> cycle-a"):
        StageRegistry(loaded(CycleA, CycleB, Final))


def test_entry_point_to_a_non_stage_is_refused(fake_module: str) -> None:
    with pytest.raises(RegistryError, match="is not a Stage subclass"):
        discover(found=[point("oddity", f"{fake_module}:not_a_stage")])


def test_entry_point_that_cannot_be_imported_is_refused() -> None:
    with pytest.raises(RegistryError, match=r"cannot load entry point 'ghost'.*ModuleNotFound"):
        discover(found=[point("ghost", "no_such_module_anywhere:Ghost")])


def test_entry_point_name_must_be_the_stage_name() -> None:
    nap = point("nap", "mediamill_testkit.stages:SleepyStage")
    with pytest.raises(RegistryError, match=r"'nap'.*differs from stage name 'sleepy'"):
        discover(found=[nap])


def test_cpu_bound_stage_without_run_sync_is_refused(fake_module: str) -> None:
    with pytest.raises(RegistryError, match="'norunsync' is cpu_bound and must override run_sync"):
        discover(found=[point("norunsync", f"{fake_module}:NoRunSync")])


def test_declared_options_are_validated_and_applied() -> None:
    [sleepy] = discover(found=[SLEEPY], options={"sleepy": {"seconds": 2.5}})
    assert isinstance(sleepy.stage, SleepyStage)
    assert sleepy.stage.options == SleepyOptions(seconds=2.5)


def test_undeclared_option_is_refused_naming_the_variable_and_option() -> None:
    with pytest.raises(RegistryError, match="MEDIAMILL_STAGE_OPTIONS") as caught:
        discover(found=[SLEEPY], options={"sleepy": {"secnods": 1}})
    assert "'sleepy'" in str(caught.value)
    assert "secnods" in str(caught.value)


def test_options_for_a_stage_not_loaded_are_refused() -> None:
    with pytest.raises(RegistryError, match=r"MEDIAMILL_STAGE_OPTIONS.*not loaded: sleepy"):
        discover(["probe", "publish"], {"sleepy": {"seconds": 1}}, found=[PROBE, PUBLISH, SLEEPY])


# --- the DAG -------------------------------------------------------------------------------


def test_a_final_stage_is_required() -> None:
    with pytest.raises(RegistryError, match="no final stage"):
        StageRegistry(loaded(ProbeStage, Left))


def test_non_final_stage_may_not_require_a_final_stage() -> None:
    with pytest.raises(RegistryError, match="'needs-final' requires final stage 'final'"):
        StageRegistry(loaded(NeedsFinal, Final))


def test_topological_order_is_deterministic_whatever_the_input_order() -> None:
    classes = (Final, Join, Right, ProbeStage, Left, Loose)
    orders = {
        tuple(stage.name for stage in StageRegistry(loaded(*perm)).order)
        for perm in itertools.permutations(classes)
    }
    # Dependencies first, ties by name, final stages last.
    assert orders == {("probe", "left", "right", "join", "loose", "final")}


def test_ancestors_are_transitive_and_final_stages_follow_everything() -> None:
    registry = StageRegistry(loaded(Final, Join, Right, ProbeStage, Left, Loose))
    assert registry.ancestors == {
        "probe": frozenset(),
        "loose": frozenset(),
        "left": {"probe"},
        "right": {"probe"},
        "join": {"probe", "left", "right"},
        "final": {"probe", "left", "right", "join", "loose"},
    }


def test_critical_path_is_the_longest_chain_of_timeouts() -> None:
    registry = StageRegistry(loaded(Final, Join, Right, ProbeStage, Left, Loose))
    # probe 60 -> right 20 -> join 5 -> final 2 (loose's 1 s runs alongside).
    assert registry.critical_path_seconds() == pytest.approx(87.0)


def test_describe_lists_each_stage_in_order() -> None:
    registry = StageRegistry(discover(["publish", "probe"], found=[PROBE, PUBLISH]))
    rows = registry.describe()
    assert [row["name"] for row in rows] == ["probe", "publish"]
    # Entry points built by hand carry no distribution.
    assert rows[0] == {
        "name": "probe",
        "version": ProbeStage.version,
        "distribution": None,
        "distribution_version": None,
        "kinds": ["image", "video"],
        "requires": [],
        "optional": False,
        "final": False,
        "cpu_bound": True,
        "timeout": 60.0,
    }
    assert rows[1]["final"] is True
    assert rows[1]["cpu_bound"] is False
    assert rows[1]["timeout"] == PublishStage.timeout


def test_describe_names_the_installed_distribution() -> None:
    rows = StageRegistry.from_settings(["probe", "publish"], {}).describe()
    assert {(row["name"], row["distribution"]) for row in rows} == {
        ("probe", "mediamill"),
        ("publish", "mediamill"),
    }


def test_kinds_restriction_is_described() -> None:
    class VideoOnly(_Async):
        name = "video-only"
        kinds = frozenset({MediaKind.VIDEO})

    rows = StageRegistry(loaded(VideoOnly, Final)).describe()
    assert rows[0]["kinds"] == ["video"]


# --- settings and timing -------------------------------------------------------------------


def test_settings_errors_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIAMILL_CONCURRENCY", "0")
    monkeypatch.setenv("MEDIAMILL_LOG_FORMAT", "xml")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "MEDIAMILL_CONCURRENCY" in message
    assert "(got '0')" in message
    assert "MEDIAMILL_LOG_FORMAT" in message
    assert "'xml'" in message


def test_retry_base_above_max_names_both_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIAMILL_RETRY_BASE_SECONDS", "30")
    monkeypatch.setenv("MEDIAMILL_RETRY_MAX_SECONDS", "10")
    with pytest.raises(SettingsError, match=r"MEDIAMILL_RETRY_BASE_SECONDS.*RETRY_MAX_SECONDS"):
        load_settings()


def test_missing_required_setting_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="MEDIAMILL_QUEUE_URL"):
        load_settings().require("queue_url")


def test_stage_options_that_are_not_json_name_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEDIAMILL_STAGE_OPTIONS", "{sleepy: nonsense")
    with pytest.raises(SettingsError, match="MEDIAMILL_STAGE_OPTIONS"):
        load_settings()


def test_stages_list_is_split_on_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIAMILL_STAGES", " probe , sleepy,,publish ")
    assert load_settings().stages == ("probe", "sleepy", "publish")


def _chain(seconds: float) -> StageRegistry:
    class Long(_Async):
        name = "long"
        timeout = seconds - Final.timeout

    return StageRegistry(loaded(Long, Final))


def test_check_timing_accepts_a_chain_within_the_sqs_limit() -> None:
    settings = load_settings(visibility_timeout=120)
    check_timing(settings, _chain(SQS_MAX_VISIBILITY - 120))


def test_check_timing_refuses_a_chain_beyond_the_sqs_limit() -> None:
    settings = load_settings(visibility_timeout=120)
    with pytest.raises(SettingsError, match="MEDIAMILL_VISIBILITY_TIMEOUT is 120 s"):
        check_timing(settings, _chain(SQS_MAX_VISIBILITY - 120 + 1))


# --- the CLI -------------------------------------------------------------------------------


def mediamill(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_stages_json_lists_built_in_stages() -> None:
    done = mediamill("stages", "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in map(json.loads, done.stdout.splitlines())}
    for name in ("probe", "publish"):
        assert rows[name]["distribution"] == "mediamill"
        assert rows[name]["distribution_version"] == dist_version("mediamill")
    assert rows["publish"]["final"] is True


def test_cli_stages_with_an_unknown_enabled_stage_exits_2() -> None:
    done = mediamill("stages", "--json", MEDIAMILL_STAGES="probe,nonexistent")
    assert done.returncode == 2
    assert "MEDIAMILL_STAGES" in done.stderr
    assert "nonexistent" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_cli_with_stage_options_that_are_not_json_exits_2() -> None:
    done = mediamill("stages", "--json", MEDIAMILL_STAGE_OPTIONS="{sleepy: nonsense")
    assert done.returncode == 2, done.stderr
    assert "MEDIAMILL_STAGE_OPTIONS" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_worker_with_invalid_concurrency_exits_2() -> None:
    done = mediamill("worker", "--burst", MEDIAMILL_CONCURRENCY="0")
    assert done.returncode == 2
    assert "MEDIAMILL_CONCURRENCY" in done.stderr
    assert "Traceback" not in done.stderr
