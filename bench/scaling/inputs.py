"""The simulation's inputs: deploy/ecs/sizing.json (measured by `make bench`, plus the mix and
load we size for) and the defaults deploy/ecs/template.yaml carries."""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench.report import Measurement, machine
from bench.scaling.model import TaskShape, Work

ROOT = Path(__file__).resolve().parents[2]
SIZING = ROOT / "deploy" / "ecs" / "sizing.json"
TEMPLATE = ROOT / "deploy" / "ecs" / "template.yaml"


class InputError(ValueError):
    """sizing.json, the template or a benchmark result cannot feed the simulation; says why."""


@dataclass(frozen=True, slots=True)
class Sizing:
    """deploy/ecs/sizing.json: what the template's scaling defaults were derived from."""

    photo_cpu_seconds: float  # one 12 MP camera JPEG through probe + thumbnail
    video_cpu_seconds: float  # one short video (the bench's 1080p30 clip) through probe + transcode
    video_cores_busy: float  # cores that stage kept busy on its own
    video_seconds: int  # the clip's length
    command: str
    date: str
    machine: str
    video_share: float  # of uploads; the rest are photos
    steady_uploads_per_second: float
    task_vcpu: float
    worker_slots: int  # MEDIAMILL_CONCURRENCY

    @property
    def work(self) -> Work:
        return Work(
            photo_cpu=self.photo_cpu_seconds,
            video_cpu=self.video_cpu_seconds,
            video_cores=self.video_cores_busy,
            video_share=self.video_share,
        )

    @property
    def shape(self) -> TaskShape:
        return TaskShape(vcpu=self.task_vcpu, slots=self.worker_slots)

    @classmethod
    def load(cls, path: Path = SIZING) -> Sizing:
        try:
            data = json.loads(path.read_text())
            measured, chosen = data["measured"], data["chosen"]
            sizing = cls(**measured, **chosen)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InputError(f"{path}: not a sizing file the simulation reads ({error})") from None
        sizing.check(str(path))
        return sizing

    def check(self, where: str) -> None:
        positive = {
            "photo_cpu_seconds": self.photo_cpu_seconds,
            "video_cpu_seconds": self.video_cpu_seconds,
            "video_cores_busy": self.video_cores_busy,
            "steady_uploads_per_second": self.steady_uploads_per_second,
            "task_vcpu": self.task_vcpu,
            "worker_slots": self.worker_slots,
        }
        bad = [name for name, value in positive.items() if not value > 0]
        if bad or not 0 <= self.video_share <= 1:
            wrong = ", ".join(bad) or "video_share (must be within 0..1)"
            raise InputError(f"{where}: {wrong} must be a positive number")

    def save(self, path: Path = SIZING) -> None:
        figures = asdict(self)
        measured = {k: figures[k] for k in _MEASURED}
        chosen = {k: v for k, v in figures.items() if k not in _MEASURED}
        text = json.dumps({"about": _ABOUT, "measured": measured, "chosen": chosen}, indent=2)
        path.write_text(text + "\n")

    def measured_again(self, measurements: Sequence[Measurement], *, command: str) -> Sizing:
        """This file with the CPU figures of a fresh, full `make bench` run."""
        from bench.images import PHOTO_CPU
        from bench.video import SHORT_VIDEO_SECONDS, VIDEO_CORES, VIDEO_CPU

        values = {m.name: m.value for m in measurements}
        missing = [name for name in (PHOTO_CPU, VIDEO_CPU, VIDEO_CORES) if name not in values]
        if missing:
            raise InputError(f"the benchmark results lack {', '.join(missing)}")
        return replace(
            self,
            photo_cpu_seconds=round(values[PHOTO_CPU], 4),
            video_cpu_seconds=round(values[VIDEO_CPU], 2),
            video_cores_busy=round(values[VIDEO_CORES], 2),
            video_seconds=SHORT_VIDEO_SECONDS,
            command=command,
            date=datetime.date.today().isoformat(),
            machine=machine(),
        )


_MEASURED = (
    "photo_cpu_seconds",
    "video_cpu_seconds",
    "video_cores_busy",
    "video_seconds",
    "command",
    "date",
    "machine",
)
_ABOUT = (
    "Inputs of the scaling simulation (python -m bench.scaling) that the template's scaling "
    "defaults come from. `make bench` rewrites `measured`; `chosen` is ours to edit."
)


def results_file(path: Path) -> list[Measurement]:
    """bench/results.json as measurements."""
    try:
        return [Measurement.from_row(row) for row in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError) as error:
        raise InputError(f"{path}: not a benchmark results file ({error})") from None


# --- the template ----------------------------------------------------------------------------


def read_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as cfn-lint decodes it: CloudFormation's short tags (!Ref ...) understood."""
    from cfnlint.decode import decode

    if not path.is_file():
        raise InputError(f"{path}: no such template")
    template, errors = decode(str(path))
    if errors or not isinstance(template, dict):
        reasons = "; ".join(str(e) for e in errors) or "not a mapping"
        raise InputError(f"{path}: cannot read the template ({reasons})")
    return dict(template)


def parameter_default(template: dict[str, Any], name: str) -> float | None:
    """A Number parameter's default, or None when the template has no such parameter."""
    parameter = (template.get("Parameters") or {}).get(name)
    if parameter is None or "Default" not in parameter:
        return None
    try:
        return float(parameter["Default"])
    except (TypeError, ValueError):
        raise InputError(f"the template's {name} default is not a number") from None


def scale_in_cooldown(template: dict[str, Any]) -> float | None:
    """The target tracking policy's ScaleInCooldown, where the template states it as a number."""
    for resource in (template.get("Resources") or {}).values():
        if resource.get("Type") != "AWS::ApplicationAutoScaling::ScalingPolicy":
            continue
        config = (resource.get("Properties") or {}).get("TargetTrackingScalingPolicyConfiguration")
        if isinstance(config, dict) and isinstance(config.get("ScaleInCooldown"), int | float):
            return float(config["ScaleInCooldown"])
    return None


def worker_slots(template: dict[str, Any]) -> int | None:
    """MEDIAMILL_CONCURRENCY of the worker's task definition, where it is a plain value."""
    for resource in (template.get("Resources") or {}).values():
        if resource.get("Type") != "AWS::ECS::TaskDefinition":
            continue
        for container in (resource.get("Properties") or {}).get("ContainerDefinitions") or []:
            for variable in container.get("Environment") or []:
                value = variable.get("Value")
                if variable.get("Name") == "MEDIAMILL_CONCURRENCY" and str(value).isdigit():
                    return int(value)
    return None
