"""Sizing by simulation: the backlog-per-task target the template's scaling policy should hold.

``python -m bench.scaling`` (and ``make bench``, after the media suites) runs a discrete-event
simulation (SimPy) of the media queue, the worker's ECS tasks and the scaling policy, fed with
the CPU seconds a photo and a short video cost (deploy/ecs/sizing.json, measured by the bench),
for a steady load and a 10x burst of 15 minutes. It compares the template's policy with naive
ones and picks the target value: the fewest task-hours that keep p95 upload-to-READY within the
latency goal for both loads. deploy/ecs/README.md ("Tune scaling") shows the table.

What the model takes from AWS's documentation (Application Auto Scaling's target tracking guide
and its metric-math example, the SQS developer guide, CloudWatch's alarm actions, the ECS guide):

- SQS sends its queue metrics to CloudWatch at one-minute intervals. ``ApproximateNumber
  OfMessagesVisible`` counts the messages available for retrieval; messages in flight (received,
  not yet deleted or back) are ``ApproximateNumberOfMessagesNotVisible``. So what a worker holds
  in its slots, waiting for a CPU thread or not, is not backlog. AWS publishes no figure for the
  delay before a datapoint can be read; the model takes 90 s (``--metric-lag``), and ignores the
  up to 15 minutes AWS warns of when a queue wakes after six idle hours.
- Backlog per task is AWS's own metric-math example for ECS: visible messages (Sum, 1 minute)
  ÷ Container Insights' ``RunningTaskCount`` (Average, 1 minute), the tasks in the RUNNING state:
  starting tasks are not counted. With no task running the expression has no value, and target
  tracking does not act on insufficient data; a step policy on a one-datapoint alarm (visible
  > 0) takes the service from 0 to 1.
- Target tracking makes and manages two alarms: the high one needs 3 of 3 one-minute datapoints
  above the target, the low one 15 of 15 below it (neither configurable), and the low one sits
  "far enough below the target value (usually more than 10% lower)".
- Unlike other alarm actions, Auto Scaling actions run again each minute while the alarm stays
  in ALARM.
- It scales out "proportionally to the metric as fast as it can", rounding so as not to add too
  little or remove too much, and scales in more gradually. AWS does not publish the arithmetic:
  the model asks for the tasks that bring the metric to the target on the tasks it counted,
  ceil(visible ÷ B), between MinTasks and MaxTasks.
- Scale-out cooldown: the policy "won't increase the desired capacity again unless either a
  larger scale out is triggered or the cooldown period ends". Every scale-out here is such a
  larger one, so that cooldown holds nothing back. Scale-in cooldown: scale-ins wait for it to
  end, and a scale-out during it ends it.
- Fargate pulls the whole image for each task (nothing is cached); AWS's own answer is that "it
  is normal for new AWS Fargate tasks to take 30-45 seconds or longer to start". The model takes
  60 s (``--task-start``) from the desired count's change to a task that receives.
- A task with jobs in flight holds scale-in protection (the worker asks the ECS agent), so ECS
  stops starting tasks first, then idle ones, and a busy one only once it goes idle.

The reaction time T_react = metric period + the high alarm's 3 periods + metric lag + task
start, 390 s by default: a burst waits at least that long for a new task. A target B means a task
holds about B visible messages besides its slots before the fleet grows; B = mu * L (mu a task's
messages a second, L the goal) lets the wait alone fill the whole goal, before the reaction time
is even counted. B = mu * (L - T_react) leaves the reaction its time; the simulation checks both.
"""

from bench.scaling.choice import Choice, Outcome, Setup, choose, setup
from bench.scaling.inputs import InputError, Sizing
from bench.scaling.model import Load, Result, Scenario, TaskShape, Work, arrivals, simulate
from bench.scaling.policy import FixedFleet, Lags, TargetTracking

__all__ = [
    "Choice",
    "FixedFleet",
    "InputError",
    "Lags",
    "Load",
    "Outcome",
    "Result",
    "Scenario",
    "Setup",
    "Sizing",
    "TargetTracking",
    "TaskShape",
    "Work",
    "arrivals",
    "choose",
    "setup",
    "simulate",
]
