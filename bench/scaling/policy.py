"""The policies, and what Application Auto Scaling decides at each evaluation of its alarms.

Only what CloudWatch holds reaches a decision: one datapoint a period of visible messages and of
running tasks, each seen ``metric_lag`` after it was taken.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Lags:
    """AWS's timings, as documented (bench/scaling/__init__.py names them)."""

    period: float = 60.0  # CloudWatch datapoint period of the SQS and Container Insights metrics
    metric_lag: float = 90.0  # from a datapoint's end to the alarm seeing it
    out_datapoints: int = 3  # the managed high alarm: 3 of 3 one-minute datapoints
    in_datapoints: int = 15  # the managed low alarm: 15 of 15
    in_ratio: float = 0.9  # the low alarm sits about 10 % under the target
    scale_in_cooldown: float = 300.0
    task_start: float = 60.0  # Fargate: capacity, ENI, image pull, start, first receive

    @property
    def reaction(self) -> float:
        """T_react: metric period + the high alarm's datapoints + metric lag + task start."""
        return (1 + self.out_datapoints) * self.period + self.metric_lag + self.task_start


@dataclass(frozen=True, slots=True)
class FixedFleet:
    tasks: int


@dataclass(frozen=True, slots=True)
class TargetTracking:
    """Target tracking on visible ÷ running tasks, with the 0 → 1 step alarm beside it."""

    target: float
    min_tasks: int
    max_tasks: int


Policy = FixedFleet | TargetTracking


@dataclass(frozen=True, slots=True)
class Datapoint:
    """One period's SQS visible messages and Container Insights running tasks."""

    sampled: float
    visible: int
    running: int


@dataclass(frozen=True, slots=True)
class Decision:
    desired: int
    cause: str  # "scale-out", "scale-in" (target tracking) or "step 0->1"
    no_scale_in_before: float  # the scale-in cooldown's end


def decide(
    policy: TargetTracking,
    lags: Lags,
    points: list[Datapoint],
    desired: int,
    now: float,
    no_scale_in_before: float,
) -> Decision | None:
    """One evaluation of the alarms on the datapoints seen so far (oldest first), or no change.

    The alarms are evaluated each minute, and Auto Scaling actions repeat while in ALARM.
    """
    target = policy.target
    if points[-1].visible > 0 and desired == 0:
        return Decision(max(1, policy.min_tasks), "step 0->1", no_scale_in_before)

    def ratios(count: int) -> list[float] | None:
        # visible ÷ running: no datapoint when no task runs (metric math divides by zero)
        recent = points[-count:]
        if len(recent) < count or any(p.running == 0 for p in recent):
            return None
        return [p.visible / p.running for p in recent]

    high, low = ratios(lags.out_datapoints), ratios(lags.in_datapoints)
    # The capacity that brings the metric to the target, on the tasks the metric counted.
    need = math.ceil(points[-1].visible / target)
    need = min(max(need, policy.min_tasks), policy.max_tasks)
    if high is not None and all(r > target for r in high):
        # A scale-out ends the scale-in cooldown.
        return Decision(need, "scale-out", now) if need > desired else None
    low_alarm = low is not None and all(r < lags.in_ratio * target for r in low)
    if low_alarm and need < desired and now >= no_scale_in_before:
        return Decision(need, "scale-in", now + lags.scale_in_cooldown)
    return None
