"""sizing.json and the template as the simulation reads them, and `make bench` rewriting it."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from bench.images import PHOTO_CPU
from bench.report import Measurement, machine
from bench.scaling import InputError, Sizing
from bench.scaling.cli import configure, main, refresh
from bench.scaling.inputs import SIZING, parameter_default, read_template, scale_in_cooldown
from bench.video import SHORT_VIDEO_SECONDS, VIDEO_CORES, VIDEO_CPU

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  LatencyGoalSeconds: {Type: Number, Default: 420}
  BacklogPerTaskTarget: {Type: Number, Default: 12}
  MinTasks: {Type: Number, Default: 2}
  MaxTasks: {Type: Number, Default: 7}
  TaskCpu: {Type: String, Default: "2048"}
Resources:
  Queue:
    Type: AWS::SQS::Queue
  Scaling:
    Type: AWS::ApplicationAutoScaling::ScalingPolicy
    Properties:
      PolicyName: !Sub "${AWS::StackName}-scaling"
      PolicyType: TargetTrackingScaling
      ScalingTargetId: !Ref Queue
      TargetTrackingScalingPolicyConfiguration:
        TargetValue: !Ref BacklogPerTaskTarget
        ScaleInCooldown: 240
        CustomizedMetricSpecification:
          Metrics:
            - Id: visible
              MetricStat:
                Metric:
                  Dimensions: [{Name: QueueName, Value: !GetAtt Queue.QueueName}]
"""


@pytest.fixture
def sizing_file(tmp_path: Path) -> Path:
    path = tmp_path / "sizing.json"
    # Light work, so that a quick run takes a second.
    light = replace(Sizing.load(SIZING), photo_cpu_seconds=0.5, video_cpu_seconds=4.0)
    light.save(path)
    return path


def test_the_template_s_defaults_become_the_scenario(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE)
    template = read_template(path)
    assert parameter_default(template, "BacklogPerTaskTarget") == 12
    assert parameter_default(template, "NoSuchParameter") is None
    assert scale_in_cooldown(template) == 240
    s = configure(Sizing.load(SIZING), template)
    assert (s.goal, s.min_tasks, s.max_tasks) == (420, 2, 7)
    assert s.lags.scale_in_cooldown == 240
    assert configure(Sizing.load(SIZING), template, goal=900, max_tasks=3).max_tasks == 3


def test_an_unreadable_template_or_sizing_file_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "template.yaml"
    broken.write_text("Resources: [unclosed\n")
    with pytest.raises(InputError, match=r"template\.yaml: cannot read the template"):
        read_template(broken)
    bad = tmp_path / "sizing.json"
    bad.write_text(json.dumps({"measured": {}, "chosen": {}}))
    with pytest.raises(InputError, match=r"sizing\.json: not a sizing file"):
        Sizing.load(bad)
    data = json.loads(SIZING.read_text())
    data["chosen"]["task_vcpu"] = 0
    bad.write_text(json.dumps(data))
    with pytest.raises(InputError, match="task_vcpu must be a positive number"):
        Sizing.load(bad)


def test_a_full_bench_run_rewrites_the_measured_figures_and_keeps_the_chosen(
    sizing_file: Path,
) -> None:
    before = Sizing.load(sizing_file)
    measured = [
        Measurement(PHOTO_CPU, 0.123456, "CPU s/photo"),
        Measurement(VIDEO_CPU, 21.987, "CPU s/clip"),
        Measurement(VIDEO_CORES, 1.777, "cores"),
    ]
    refresh(before, measured, sizing_file, Console(file=None, quiet=True))
    after = Sizing.load(sizing_file)
    assert (after.photo_cpu_seconds, after.video_cpu_seconds) == (0.1235, 21.99)
    assert (after.video_cores_busy, after.video_seconds) == (1.78, SHORT_VIDEO_SECONDS)
    assert after.command == "make bench"
    assert after.video_share == before.video_share
    assert after.steady_uploads_per_second == before.steady_uploads_per_second
    with pytest.raises(InputError, match="lack"):
        refresh(before, measured[:1], sizing_file, Console(quiet=True))


def test_the_command_prints_the_table_and_the_template_s_verdict(
    tmp_path: Path, sizing_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE)
    code = main(["--sizing", str(sizing_file), "--template", str(path), "--quick"])
    out = capsys.readouterr().out
    assert code == 0
    assert "B = mu*L" in out
    assert "fixed fleet" in out
    assert "BacklogPerTaskTarget = " in out
    assert "the template says 12: fix it" in out or "the template agrees" in out
    assert "B = 12, the template's" in out  # how the template's own value fares, beside the pick


def test_the_command_says_when_max_tasks_or_the_goal_cannot_work(
    tmp_path: Path, sizing_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE)
    argv = ["--sizing", str(sizing_file), "--template", str(path), "--quick"]
    code = main([*argv, "--max-tasks", "1", "--goal", "200"])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 1
    assert "MaxTasks 1 is below the" in out
    assert "B = mu*(L - T_react) has no value" in out
    assert "No target keeps p95 within 200 s" in out


_CPUINFO = """processor\t: 0
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse4_1 sse4_2 avx avx2 bmi2 {extra}
processor\t: 1
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse4_1 sse4_2 avx avx2 bmi2 {extra}
"""


@pytest.mark.parametrize(("extra", "vectors"), [("avx512f avx512bw", "AVX-512"), ("", "AVX2")])
def test_the_machine_names_its_widest_vector_set(extra: str, vectors: str) -> None:
    # libvips picks its code by the vector set at run time: figures say which they had.
    described = machine(_CPUINFO.format(extra=extra))
    assert described.startswith(f"{len(os.sched_getaffinity(0))} CPUs, AMD EPYC 9R14")
    assert described.endswith(f", {vectors}")


def test_a_machine_without_cpuinfo_is_still_described() -> None:
    assert machine("").endswith("CPUs, unknown CPU")
