"""The model: an SQS queue, ECS tasks with slots and vCPUs, CloudWatch datapoints, and a scaling
policy that sees only those datapoints, late. SimPy drives the clock; the figures come from outside.

A message is visible in the queue until a running task with a free slot receives it (long polling
hands it over at once); from then on it is in flight, and no longer counted as visible. Inside a
task, at most ``cpu_threads`` messages hold a CPU thread at once (the worker's CPU limiter); they
share the task's vCPUs, each using at most the cores its stage can use (a photo one, a video what
the benchmark saw it keep busy), and a message is done when its CPU seconds are spent.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections import deque
from dataclasses import dataclass, field

import simpy

from bench.scaling.policy import Datapoint, FixedFleet, Lags, Policy, TargetTracking, decide

_DONE = 1e-6  # CPU seconds left that count as none: float error, not work


@dataclass(frozen=True, slots=True)
class Work:
    """What a message costs: measured CPU seconds per photo and per short video, and the mix."""

    photo_cpu: float
    video_cpu: float
    video_cores: float  # cores a video's stage kept busy on its own in the benchmark
    video_share: float  # of all messages

    @property
    def mean_cpu(self) -> float:
        return (1 - self.video_share) * self.photo_cpu + self.video_share * self.video_cpu


@dataclass(frozen=True, slots=True)
class TaskShape:
    """One ECS task: its vCPUs and the worker's slots (``MEDIAMILL_CONCURRENCY``)."""

    vcpu: float
    slots: int

    @property
    def cpu_threads(self) -> int:
        # The worker's default MEDIAMILL_CPU_THREADS: the CPUs the task may run on.
        return max(1, math.floor(self.vcpu))

    def rate(self, work: Work) -> float:
        """mu: messages a second a task finishes while its CPUs never idle."""
        return self.vcpu / work.mean_cpu


@dataclass(frozen=True, slots=True)
class Load:
    """Poisson arrivals: ``rate`` a second, times ``burst_factor`` for a while in the window."""

    name: str
    rate: float
    burst_factor: float = 1.0
    burst_at: float = 0.0  # seconds after the window opens
    burst_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Scenario:
    """The clock: a warm-up nobody is judged on, the window that is measured, time to drain."""

    warmup: float = 1800.0
    window: float = 5400.0
    drain: float = 3600.0  # at most, after the window, for its last messages to finish


@dataclass(frozen=True, slots=True)
class Activity:
    """A change of the service's desired count, and what asked for it."""

    at: float
    before: int
    after: int
    cause: str  # "scale-out", "scale-in" (target tracking) or "step 0->1"


@dataclass(frozen=True, slots=True)
class Result:
    latencies: tuple[float, ...]  # upload to READY of the window's uploads, sorted; inf: not done
    peak_tasks: int  # tasks alive at once in the window, starting ones included
    task_hours: float  # billed in the window: from a task's launch to its stop
    mean_in_system: float  # messages in the queue or in flight, averaged over the window
    activities: tuple[Activity, ...]
    window: float

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile, ``q`` in (0, 1]."""
        return self.latencies[max(0, math.ceil(q * len(self.latencies)) - 1)]

    def over(self, goal: float) -> float:
        """Share of the window's messages that took longer than ``goal`` seconds."""
        late = len(self.latencies) - bisect.bisect_right(self.latencies, goal)
        return late / len(self.latencies)

    @property
    def mean_latency(self) -> float:
        return sum(self.latencies) / len(self.latencies)

    @classmethod
    def pooled(cls, results: tuple[Result, ...]) -> Result:
        """Runs of one policy and load with other seeds as one: every upload, mean task-hours."""
        return cls(
            latencies=tuple(sorted(x for r in results for x in r.latencies)),
            peak_tasks=max(r.peak_tasks for r in results),
            task_hours=sum(r.task_hours for r in results) / len(results),
            mean_in_system=sum(r.mean_in_system for r in results) / len(results),
            activities=(),
            window=results[0].window,
        )


def simulate(
    work: Work,
    shape: TaskShape,
    lags: Lags,
    policy: Policy,
    load: Load,
    scenario: Scenario,
    *,
    seed: int,
    initial_tasks: int | None = None,
) -> Result:
    """Run ``load`` against ``policy``; the same seed gives the same arrivals to every policy.

    Target tracking starts with the tasks the steady load keeps busy, within its bounds, and
    settles in the warm-up; a fixed fleet is there from the start.
    """
    env = simpy.Environment()
    run = _Run(env, work, shape, lags, policy, scenario, seed)
    if isinstance(policy, FixedFleet):
        first = policy.tasks
    else:
        wanted = math.ceil(load.rate / shape.rate(work)) if initial_tasks is None else initial_tasks
        first = min(max(wanted, policy.min_tasks), policy.max_tasks)
    run.start(first, arrivals(load, scenario, work.video_share, seed))
    env.run(until=run.finished)
    return run.result()


def billed_hours(launched: float, stopped: float | None, opens: float, closes: float) -> float:
    """A task's Fargate time within the window: from its launch (the image pull) to its stop."""
    end = closes if stopped is None else min(stopped, closes)
    return max(0.0, end - max(launched, opens)) / 3600


def arrivals(
    load: Load, scenario: Scenario, video_share: float, seed: int
) -> list[tuple[float, bool]]:
    """(time, is video) of every upload, piecewise Poisson: memoryless, so each piece restarts."""
    rng = random.Random(f"{seed}:arrivals")
    burst_start = scenario.warmup + load.burst_at
    edges = [0.0, burst_start, burst_start + load.burst_seconds]
    edges.append(scenario.warmup + scenario.window + scenario.drain)
    factors = (1.0, load.burst_factor, 1.0)
    out: list[tuple[float, bool]] = []
    for (begin, end), factor in zip(itertools.pairwise(edges), factors, strict=True):
        rate, t = load.rate * factor, begin
        while rate > 0 and (t := t + rng.expovariate(rate)) < end:
            out.append((t, rng.random() < video_share))
    return out


class _Message:
    __slots__ = ("arrived", "cores", "done", "judged", "left", "rate")

    def __init__(self, arrived: float, cpu: float, cores: float, judged: bool) -> None:
        self.arrived, self.left, self.cores, self.judged = arrived, cpu, cores, judged
        self.rate = 0.0
        self.done = math.inf


@dataclass(slots=True)
class _Task:
    run: _Run
    launched: float
    running: bool = False
    stopped: float | None = None
    queued: deque[_Message] = field(default_factory=deque)  # received, waiting for a CPU thread
    on_cpu: list[_Message] = field(default_factory=list)
    since: float = 0.0
    timer: int = 0
    next_done: _Message | None = None

    @property
    def in_flight(self) -> int:
        return len(self.queued) + len(self.on_cpu)

    def spend(self) -> None:
        """Take off each message on a CPU thread what it was given since the last change."""
        now = self.run.env.now
        spent = now - self.since
        for message in self.on_cpu:
            message.left -= message.rate * spent
        self.since = now

    def reshare(self) -> None:
        """After a change: fill the CPU threads, share the vCPUs again, time the next finish."""
        self.spend()
        shape = self.run.shape
        if len(self.on_cpu) >= shape.cpu_threads and self.next_done is not None:
            return  # a message more in a slot changes nothing until a thread frees
        while self.queued and len(self.on_cpu) < shape.cpu_threads:
            self.on_cpu.append(self.queued.popleft())
        # Water-filling: the vCPUs split evenly, none given more cores than its stage can use.
        left, ordered = shape.vcpu, sorted(self.on_cpu, key=_cores)
        for index, message in enumerate(ordered):
            message.rate = min(message.cores, left / (len(ordered) - index))
            left -= message.rate
        self.timer += 1
        self.next_done = min(self.on_cpu, key=_time_left, default=None)
        if self.next_done is not None:
            token = self.timer
            wait = max(0.0, _time_left(self.next_done))
            self.run.env.timeout(wait).callbacks.append(lambda _event: self._tick(token))

    def _tick(self, token: int) -> None:
        if token != self.timer:
            return  # a later change rescheduled the next finish
        self.spend()
        done = [m for m in self.on_cpu if m is self.next_done or m.left <= _DONE]
        self.on_cpu = [m for m in self.on_cpu if m not in done]
        self.next_done = None
        for message in done:
            self.run.finish(message)
        self.run.feed(self)
        self.reshare()
        if self.in_flight == 0:
            self.run.idle(self)


def _cores(message: _Message) -> float:
    return message.cores


def _time_left(message: _Message) -> float:
    return message.left / message.rate


class _Run:
    def __init__(
        self,
        env: simpy.Environment,
        work: Work,
        shape: TaskShape,
        lags: Lags,
        policy: Policy,
        scenario: Scenario,
        seed: int,
    ) -> None:
        self.env, self.work, self.shape, self.lags, self.policy = env, work, shape, lags, policy
        self.opens, self.closes = scenario.warmup, scenario.warmup + scenario.window
        self.scenario = scenario
        self.assign = random.Random(f"{seed}:receive")  # which free poller SQS answers
        self.visible: deque[_Message] = deque()
        self.tasks: list[_Task] = []  # alive: starting and running
        self.gone: list[_Task] = []
        self.desired = 0
        self.activities: list[Activity] = []
        self.datapoints: list[Datapoint] = []
        self.judged: list[_Message] = []
        self.unfinished = 0
        self.in_system, self.area, self.tallied = 0, 0.0, 0.0
        self.peak = 0
        self.no_scale_in_before = 0.0
        self.finished = env.event()

    # --- the fleet ------------------------------------------------------------------------

    def start(self, tasks: int, arrivals: list[tuple[float, bool]]) -> None:
        self.desired = tasks
        for _ in range(tasks):
            task = _Task(self, launched=0.0, running=True)
            self.tasks.append(task)
        self.env.process(self._uploads(arrivals))
        self.env.process(self._cloudwatch())
        self.env.process(self._clock())

    def set_desired(self, desired: int, cause: str) -> None:
        self.activities.append(Activity(self.env.now, self.desired, desired, cause))
        self.desired = desired
        surplus = len(self.tasks) - desired
        for _ in range(-surplus):
            task = _Task(self, launched=self.env.now)
            self.tasks.append(task)
            self.env.process(self._boot(task))
        # ECS stops starting tasks first, then idle ones; a busy task is protected (the worker
        # asks for scale-in protection while it has jobs) and stops when it goes idle.
        for task in sorted(self.tasks, key=lambda t: (t.running, t.in_flight > 0)):
            if surplus <= 0 or (task.running and task.in_flight > 0):
                break
            self._stop(task)
            surplus -= 1
        self._count_tasks()

    def _boot(self, task: _Task) -> simpy.events.ProcessGenerator:
        yield self.env.timeout(self.lags.task_start)
        if task.stopped is None:
            task.running = True
            task.since = self.env.now
            self.feed(task)
            task.reshare()
            if task.in_flight == 0:
                self.idle(task)

    def idle(self, task: _Task) -> None:
        if len(self.tasks) > self.desired:
            self._stop(task)

    def _stop(self, task: _Task) -> None:
        task.stopped = self.env.now
        task.timer += 1  # a stopped task finishes nothing more
        self.tasks.remove(task)
        self.gone.append(task)

    def _count_tasks(self) -> None:
        if self.opens <= self.env.now < self.closes:
            self.peak = max(self.peak, len(self.tasks))

    # --- the queue ------------------------------------------------------------------------

    def _uploads(self, arrivals: list[tuple[float, bool]]) -> simpy.events.ProcessGenerator:
        work, video_cores = self.work, min(self.work.video_cores, self.shape.vcpu)
        for at, is_video in arrivals:
            yield self.env.timeout(at - self.env.now)
            cpu, cores = (work.video_cpu, video_cores) if is_video else (work.photo_cpu, 1.0)
            message = _Message(at, cpu, cores, judged=self.opens <= at < self.closes)
            if message.judged:
                self.judged.append(message)
                self.unfinished += 1
            self._tally(+1)
            free = [t for t in self.tasks if t.running and t.in_flight < self.shape.slots]
            if free:
                task = self.assign.choice(free)
                task.queued.append(message)
                task.reshare()
            else:
                self.visible.append(message)

    def feed(self, task: _Task) -> None:
        """A task with free slots receives what is visible (it long-polls, so at once)."""
        while self.visible and task.in_flight < self.shape.slots:
            task.queued.append(self.visible.popleft())

    def finish(self, message: _Message) -> None:
        message.done = self.env.now
        self._tally(-1)
        if message.judged:
            self.unfinished -= 1
            if self.unfinished == 0 and self.env.now >= self.closes:
                self.finished.succeed()  # the window's last message is done

    def _tally(self, change: int) -> None:
        now = min(max(self.env.now, self.opens), self.closes)
        self.area += self.in_system * (now - self.tallied)
        self.tallied = now
        self.in_system += change

    def _clock(self) -> simpy.events.ProcessGenerator:
        yield self.env.timeout(self.opens)
        self._count_tasks()
        yield self.env.timeout(self.closes - self.opens)
        if self.unfinished:
            yield self.env.timeout(self.scenario.drain)
        if not self.finished.triggered:
            self.finished.succeed()  # what is still left counts as never done

    # --- CloudWatch and Application Auto Scaling ------------------------------------------

    def _cloudwatch(self) -> simpy.events.ProcessGenerator:
        lags, seen = self.lags, 0
        while True:
            yield self.env.timeout(lags.period)
            running = sum(t.running for t in self.tasks)
            self.datapoints.append(Datapoint(self.env.now, len(self.visible), running))
            while seen < len(self.datapoints) and (
                self.datapoints[seen].sampled + lags.metric_lag <= self.env.now
            ):
                seen += 1
            if isinstance(self.policy, TargetTracking) and seen:
                decision = decide(
                    self.policy, lags, self.datapoints[:seen], self.desired, self.env.now,
                    self.no_scale_in_before,
                )  # fmt: skip
                if decision is not None:
                    self.set_desired(decision.desired, decision.cause)
                    self.no_scale_in_before = decision.no_scale_in_before

    # --- the outcome ----------------------------------------------------------------------

    def result(self) -> Result:
        opens, closes = self.opens, self.closes
        hours = sum(billed_hours(t.launched, t.stopped, opens, closes) for t in self.tasks)
        hours += sum(billed_hours(t.launched, t.stopped, opens, closes) for t in self.gone)
        latencies = sorted(m.done - m.arrived for m in self.judged)
        return Result(
            latencies=tuple(latencies),
            peak_tasks=self.peak,
            task_hours=hours,
            mean_in_system=self.area / (closes - opens),
            activities=tuple(self.activities),
            window=closes - opens,
        )
