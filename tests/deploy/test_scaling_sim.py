"""The template's scaling defaults are what the simulation derives from deploy/ecs/sizing.json."""

from __future__ import annotations

import datetime

import pytest

from bench.scaling import Sizing, choose
from bench.scaling.cli import configure
from bench.scaling.inputs import (
    SIZING,
    TEMPLATE,
    parameter_default,
    read_template,
    worker_slots,
)


@pytest.fixture(scope="module")
def template() -> dict[str, object]:
    return read_template(TEMPLATE)


@pytest.fixture(scope="module")
def sizing() -> Sizing:
    return Sizing.load(SIZING)


def _default(template: dict[str, object], name: str) -> float:
    value = parameter_default(template, name)
    assert value is not None, f"deploy/ecs/template.yaml has no default for {name}"
    return value


def test_the_template_holds_the_backlog_per_task_target_the_simulation_picks(
    template: dict[str, object], sizing: Sizing
) -> None:
    target = _default(template, "BacklogPerTaskTarget")
    goal = _default(template, "LatencyGoalSeconds")
    picked = choose(configure(sizing, template, goal=goal)).target
    assert picked is not None, f"no target meets p95 <= {goal:g} s on sizing.json's inputs"
    assert target == picked, (
        f"BacklogPerTaskTarget defaults to {target:g}; the simulation picks {picked}"
        " (python -m bench.scaling prints the table)"
    )


def test_the_simulated_task_is_the_template_s_task(
    template: dict[str, object], sizing: Sizing
) -> None:
    assert _default(template, "TaskCpu") / 1024 == sizing.task_vcpu
    slots = worker_slots(template)
    if slots is not None:  # otherwise the worker's own default, which sizing.json must hold
        assert slots == sizing.worker_slots
    else:
        from mediamill_core.settings import Settings

        assert Settings.model_fields["concurrency"].default == sizing.worker_slots


def test_sizing_json_says_what_was_measured_where_and_when(sizing: Sizing) -> None:
    assert sizing.command == "make bench"
    datetime.date.fromisoformat(sizing.date)
    assert "CPU" in sizing.machine
    assert 0 < sizing.photo_cpu_seconds < sizing.video_cpu_seconds
