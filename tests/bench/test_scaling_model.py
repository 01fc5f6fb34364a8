"""The scaling simulation's mechanics: the lags, the bounds and the bookkeeping it is judged by."""

from __future__ import annotations

import math

import pytest

from bench.scaling import (
    FixedFleet,
    Lags,
    Load,
    Scenario,
    TargetTracking,
    TaskShape,
    Work,
    arrivals,
    simulate,
)
from bench.scaling.model import billed_hours
from bench.scaling.policy import Datapoint, decide

PHOTOS = Work(photo_cpu=4.0, video_cpu=40.0, video_cores=2.0, video_share=0.0)
MIXED = Work(photo_cpu=1.0, video_cpu=20.0, video_cores=2.0, video_share=0.1)
SHAPE = TaskShape(vcpu=2, slots=4)  # mu = 0.5 message/s with PHOTOS
LAGS = Lags()
SHORT = Scenario(warmup=600, window=1800, drain=3600)


def _burst(rate: float = 0.1, factor: float = 40, seconds: float = 600) -> Load:
    return Load("burst", rate, factor, burst_at=0, burst_seconds=seconds)


def test_the_reaction_time_adds_period_high_alarm_lag_and_task_start() -> None:
    assert LAGS.reaction == 60 + 3 * 60 + 90 + 60


def test_no_scale_out_before_the_high_alarm_has_three_datapoints() -> None:
    policy = TargetTracking(target=10, min_tasks=1, max_tasks=20)
    result = simulate(PHOTOS, SHAPE, LAGS, policy, _burst(), SHORT, seed=1)
    outs = [a for a in result.activities if a.cause == "scale-out"]
    assert outs, "the burst must make it scale out"
    burst_starts = SHORT.warmup
    # Three one-minute datapoints over the target, then the lag before the alarm sees the third.
    earliest = burst_starts + LAGS.out_datapoints * LAGS.period + LAGS.metric_lag
    assert earliest <= outs[0].at <= earliest + 2 * LAGS.period
    assert all(a.at >= burst_starts for a in result.activities)


def test_zero_to_one_takes_one_datapoint_of_visible_messages() -> None:
    policy = TargetTracking(target=10, min_tasks=0, max_tasks=5)
    load = Load("sparse", 1 / 900)
    result = simulate(PHOTOS, SHAPE, LAGS, policy, load, SHORT, seed=3, initial_tasks=0)
    first = arrivals(load, SHORT, PHOTOS.video_share, seed=3)[0][0]
    step = result.activities[0]
    assert (step.cause, step.before, step.after) == ("step 0->1", 0, 1)
    # The minute holding the upload ends, its datapoint is seen after the lag, at an evaluation.
    assert first + LAGS.metric_lag < step.at <= first + 2 * LAGS.period + LAGS.metric_lag
    assert all(math.isfinite(x) for x in result.latencies)


def test_tasks_never_exceed_max_tasks_and_are_billed_within_the_window() -> None:
    policy = TargetTracking(target=2, min_tasks=1, max_tasks=3)
    # The burst outlasts the window: tasks still run after it closes, and are not billed then.
    result = simulate(PHOTOS, SHAPE, LAGS, policy, _burst(seconds=2400), SHORT, seed=1)
    assert result.peak_tasks == 3
    assert max(a.after for a in result.activities) == 3
    assert SHORT.window / 3600 < result.task_hours <= 3 * SHORT.window / 3600
    crowded = simulate(PHOTOS, SHAPE, LAGS, policy, _burst(), SHORT, seed=1, initial_tasks=9)
    assert crowded.peak_tasks == 3


def test_a_fixed_fleet_bills_its_tasks_for_exactly_the_window() -> None:
    result = simulate(MIXED, SHAPE, LAGS, FixedFleet(4), _burst(), SHORT, seed=1)
    assert result.task_hours == 4 * SHORT.window / 3600
    assert result.peak_tasks == 4
    assert result.activities == ()


@pytest.mark.parametrize(
    ("launched", "stopped", "hours"),
    [
        (0, None, 1.0),  # there before the window opens, still running when it closes
        (0, 9000, 1.0),  # stopped after the window closed (during the drain)
        (0, 1800, 0.0),  # came and went in the warm-up
        (3600, 5400, 0.5),
        (7300, None, 0.0),  # launched after the window closed
    ],
)
def test_a_task_is_billed_for_its_time_within_the_window(
    launched: float, stopped: float | None, hours: float
) -> None:
    assert billed_hours(launched, stopped, opens=3600, closes=7200) == hours


def test_littles_law_holds_on_a_steady_load() -> None:
    scenario = Scenario(warmup=1800, window=4 * 3600, drain=3600)
    load = Load("steady", 0.6 * 2 * SHAPE.rate(MIXED))  # two tasks at 60 %
    result = simulate(MIXED, SHAPE, LAGS, FixedFleet(2), load, scenario, seed=5)
    throughput = len(result.latencies) / scenario.window
    assert throughput == pytest.approx(load.rate, rel=0.05)
    assert result.mean_in_system == pytest.approx(throughput * result.mean_latency, rel=0.03)
    assert result.mean_latency > MIXED.mean_cpu / 2  # at least the service itself


def test_messages_in_flight_are_not_visible_backlog() -> None:
    # One task, 1 vCPU, overloaded: with 200 slots it holds everything in flight, so the queue
    # shows nothing and the policy never scales out; with 1 slot the same load is backlog.
    load = Load("over", 0.4)
    policy = TargetTracking(target=5, min_tasks=1, max_tasks=10)
    photos = Work(photo_cpu=3.0, video_cpu=1.0, video_cores=1.0, video_share=0.0)

    def outs(slots: int) -> int:
        shape = TaskShape(vcpu=1, slots=slots)
        result = simulate(photos, shape, LAGS, policy, load, SHORT, seed=2, initial_tasks=1)
        return sum(a.cause == "scale-out" for a in result.activities)

    assert outs(200) == 0
    assert outs(1) > 0


def test_scale_in_waits_for_fifteen_low_datapoints() -> None:
    policy = TargetTracking(target=5, min_tasks=1, max_tasks=20)
    scenario = Scenario(warmup=600, window=5400, drain=3600)
    result = simulate(PHOTOS, SHAPE, LAGS, policy, _burst(), scenario, seed=4)
    ins = [a for a in result.activities if a.cause == "scale-in"]
    assert ins, "after the burst the fleet must shrink"
    for scale_in in ins:
        before = [a.at for a in result.activities if a.at < scale_in.at and a.cause != "scale-in"]
        # The last datapoint over the target came at most a period before that scale-out.
        assert scale_in.at - max(before) >= (LAGS.in_datapoints - 1) * LAGS.period


def _points(*visible: int, running: int = 2) -> list[Datapoint]:
    return [Datapoint(60.0 * (i + 1), v, running) for i, v in enumerate(visible)]


def test_the_policy_asks_for_visible_over_target_once_three_datapoints_are_over() -> None:
    policy = TargetTracking(target=10, min_tasks=1, max_tasks=20)
    assert decide(policy, LAGS, _points(0, 30, 30), 2, 300, 0) is None
    decision = decide(policy, LAGS, _points(0, 30, 30, 45), 2, 300, 0)
    assert decision is not None
    assert (decision.desired, decision.cause) == (5, "scale-out")  # ceil(45 / 10)
    assert decide(policy, LAGS, _points(0, 30, 30, 45), 5, 360, 0) is None  # already asked


def test_scale_in_waits_for_its_cooldown_and_a_scale_out_ends_the_cooldown() -> None:
    policy = TargetTracking(target=10, min_tasks=1, max_tasks=20)
    low = _points(*[8] * 15, running=4)  # 2 a task, under 90 % of the target
    assert decide(policy, LAGS, low[1:], 4, 1000, 0) is None  # 14 datapoints are not enough
    near = _points(*[38] * 15, running=4)  # 9.5 a task: under the target, not 10 % under
    assert decide(policy, LAGS, near, 6, 1000, 0) is None
    first = decide(policy, LAGS, low, 4, 1000, 0)
    assert first is not None
    assert (first.desired, first.cause) == (1, "scale-in")
    assert first.no_scale_in_before == 1000 + LAGS.scale_in_cooldown
    assert decide(policy, LAGS, low, 3, 1060, first.no_scale_in_before) is None
    assert decide(policy, LAGS, low, 3, first.no_scale_in_before, first.no_scale_in_before)
    out = decide(policy, LAGS, _points(*[40] * 3), 1, 1060, first.no_scale_in_before)
    assert out is not None
    assert (out.cause, out.no_scale_in_before) == ("scale-out", 1060)


def test_with_no_task_running_only_the_step_alarm_acts() -> None:
    policy = TargetTracking(target=10, min_tasks=0, max_tasks=20)
    idle = _points(50, 50, 50, running=0)
    step = decide(policy, LAGS, idle, 0, 300, 0)
    assert step is not None
    assert (step.desired, step.cause) == (1, "step 0->1")
    assert decide(policy, LAGS, idle, 1, 360, 0) is None  # no ratio: target tracking waits


def test_busy_tasks_finish_their_jobs_before_they_stop() -> None:
    # Scale-in protection: under a load that keeps tasks busy while the fleet grows and
    # shrinks, every message gets done.
    policy = TargetTracking(target=3, min_tasks=1, max_tasks=15)
    scenario = Scenario(warmup=600, window=5400, drain=3600)
    result = simulate(MIXED, SHAPE, LAGS, policy, _burst(2.0, 3), scenario, seed=6)
    assert any(a.cause == "scale-in" for a in result.activities)
    assert all(math.isfinite(x) for x in result.latencies)


def test_the_same_seed_gives_the_same_run_and_another_seed_another() -> None:
    policy = TargetTracking(target=4, min_tasks=1, max_tasks=10)

    def run(seed: int) -> object:
        return simulate(MIXED, SHAPE, LAGS, policy, _burst(0.3, 10), SHORT, seed=seed)

    assert run(11) == run(11)
    assert run(11) != run(12)
