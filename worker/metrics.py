"""Prometheus metrics, one definition each; the worker's HTTP side serves them on /metrics.

``prepare`` runs once at start: it sets what the worker is (its slots, its versions) and gives
every labelled counter its known label values, so each is exported at 0 before its first event
(``rate`` and ``increase`` cannot see the first increment of a series that starts at 1).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterable, Iterator
from importlib.metadata import version

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from stages.contract import Stage

# The *_created series would double what each task remote-writes, for nothing a panel reads.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Up to the longest a built-in stage may take (hls: its 3 h timeout plus an optional stage's
# retry budget), with a bucket at each timeout (probe 60 s, tagging 120 s, thumbnail 180 s,
# publish and motion 900 s, transcode and hls 3 h): a stage that ran into its timeout shows as
# such. tests/worker/test_metrics.py fails when a built-in outgrows the top.
_STAGE_BUCKETS = (
    *(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 180, 300, 600, 900),
    *(1800, 3600, 7200, 10800, 14400),
)
# Fine around the minutes a latency goal is set in, then up to the 12 h SQS lets a job hold its
# message (worker.registry.check_timing keeps every chain of stage timeouts under that).
_LATENCY_BUCKETS = (
    *(0.5, 1, 2.5, 5, 10, 20, 30, 60, 90, 120, 180, 300, 450, 600, 900, 1200),
    *(1800, 3600, 7200, 14400, 43200),
)

# Every value each labelled counter takes; tests/worker/test_metrics.py finds every one the code
# counts under, so none is missing from what ``prepare`` exports at 0.
JOB_OUTCOMES = (
    # The message is deleted: its upload came to an end, or there was nothing to do.
    "ready",
    "failed",
    "duplicate",
    "orphan",
    "outdated",
    "superseded",
    "ignored",
    # A reprocess request: results merged into the READY item, or it asked for nothing more.
    "reprocessed",
    "satisfied",
    # The message comes back: another job holds the object, a suspect has the worker, the job
    # meets a transient fault or a bug, or the worker stopped first.
    "leased",
    "requeued",
    "retry",
    "error",
    "released",
)
SQS_OPERATIONS = ("receive", "delete", "change_visibility", "send_message", "get_queue_attributes")
DLQ_REASONS = ("malformed", "error", "transient")
SWEEP_ACTIONS = ("announced", "abandoned")
TASK_PROTECTION_ACTIONS = ("protect", "release")
LATENCY_OUTCOMES = ("ready", "failed")

JOBS = Counter(
    "mediamill_jobs_total",
    "Uploads and messages handled, by outcome and by the lane (media, backfill) they came from "
    "(see docs/operations.md).",
    ["outcome", "lane"],
)
JOBS_IN_FLIGHT = Gauge(
    "mediamill_jobs_in_flight", "Jobs running now in this worker, by lane.", ["lane"]
)
JOB_SLOTS = Gauge(
    "mediamill_job_slots", "Jobs this worker runs at once at most (MEDIAMILL_CONCURRENCY)."
)
CPU_SLOTS = Gauge(
    "mediamill_cpu_slots",
    "Threads for CPU-bound stages (MEDIAMILL_CPU_THREADS); a stuck stage thread holds one.",
)
BUILD = Info("mediamill_build", "What is running: mediamill, Python, libvips and FFmpeg versions.")
STAGE_SECONDS = Histogram(
    "mediamill_stage_duration_seconds",
    "Time spent in one stage of one job, its in-process retries included.",
    ["stage", "kind", "outcome"],
    buckets=_STAGE_BUCKETS,
)
# Fresh uploads only: a backfill job's upload was made long before, and its age says nothing
# about how long anyone waited.
UPLOAD_TO_DONE = Histogram(
    "mediamill_upload_to_done_seconds",
    "From the S3 event time of a fresh upload (media lane) to its item being READY or FAILED.",
    ["outcome"],
    buckets=_LATENCY_BUCKETS,
)
RECEIVES = Counter("mediamill_sqs_receives_total", "ReceiveMessage calls, by lane.", ["lane"])
MESSAGES_RECEIVED = Counter(
    "mediamill_sqs_messages_received_total", "Messages received, by lane.", ["lane"]
)
DELETES = Counter("mediamill_sqs_deletes_total", "Messages deleted after they were handled.")
VISIBILITY_EXTENSIONS = Counter(
    "mediamill_sqs_visibility_extensions_total",
    "ChangeMessageVisibility calls made for in-flight jobs (heartbeats).",
)
MESSAGES_RELEASED = Counter(
    "mediamill_sqs_messages_released_total",
    "Messages handed back to the queue with visibility 0 on shutdown.",
)
MALFORMED = Counter(
    "mediamill_malformed_messages_total",
    "Messages whose body is not an upload event; they are left for the DLQ.",
)
DLQ_BOUND = Counter(
    "mediamill_messages_left_for_dlq_total",
    "Messages that failed on their last allowed receive, so SQS moves them to the DLQ.",
    ["reason"],
)
ORPHANS = Counter(
    "mediamill_orphan_uploads_total",
    "Upload events for which no item exists (deleted media, or objects not made through the API).",
)
SQS_ERRORS = Counter("mediamill_sqs_errors_total", "SQS calls that failed.", ["operation"])
# Every AWS request costs CPU here and most are billed: calls per upload is a cost figure.
AWS_CALLS = Counter(
    "mediamill_aws_calls_total",
    "AWS API calls made (botocore's retries of one call not counted), by service and operation.",
    # Not "service": the collector labels every series with the ECS service under that name.
    ["aws_service", "operation"],
)
SWEPT = Counter(
    "mediamill_sweep_settled_total",
    "Items the sweep settled: owed events sent (announced), uploads whose every try killed "
    "the worker marked FAILED (abandoned).",
    ["action"],
)
KILLERS = Counter(
    "mediamill_uploads_killing_workers_total",
    "Uploads ended FAILED because each of their tries died with its worker (out of memory, a "
    "crashing decoder), whether the claim or the sweep found it.",
)


class HeldGauge(Collector):
    """A gauge that only the worker holding a check exports, and only while its value is fresh.

    Every other worker exports the family with no sample, so a fleet-wide ``max`` reads the
    holder's value and never a copy left over from a worker that held the check before.
    """

    def __init__(
        self, name: str, documentation: str, registry: CollectorRegistry | None = REGISTRY
    ) -> None:
        self.name = name
        self.documentation = documentation
        self._value: float | None = None
        self._until = 0.0
        if registry is not None:
            registry.register(self)

    def set(self, value: float, *, for_seconds: float) -> None:
        self._value = value
        self._until = time.monotonic() + for_seconds

    def clear(self) -> None:
        self._value = None

    def value(self) -> float | None:
        return self._value if time.monotonic() < self._until else None

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.documentation)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation)
        current = self.value()
        if current is not None:
            family.add_metric([], current)
        yield family


STUCK_ITEMS = HeldGauge(
    "mediamill_stuck_items",
    "Items PROCESSING longer than a try and the wait for the next may take, as counted by the "
    "one worker holding the stuck-items check (the others export no sample).",
)


STUCK_THREADS = Counter(
    "mediamill_stuck_stage_threads_total",
    "Stage threads still running a grace after their stage was cancelled or timed out.",
    ["stage"],
)
STUCK_THREADS_NOW = Gauge(
    "mediamill_stage_threads_stuck",
    "Stage threads stuck now (each holds a CPU slot; /healthz fails while there is one).",
)
OPTIONAL_STAGE_RETRIES = Counter(
    "mediamill_optional_stage_retries_total",
    "In-process retries of an optional stage after a TransientError, within its retry budget.",
    ["stage"],
)
TASK_PROTECTED = Gauge(
    "mediamill_task_protected",
    "1 while the ECS agent has confirmed this task's scale-in protection, else 0.",
)
TASK_PROTECTION_ERRORS = Counter(
    "mediamill_task_protection_errors_total",
    "Calls to the ECS agent's task protection endpoint that failed (retried), by action "
    "(protect, release).",
    ["action"],
)


SPOOL_BUDGET = Gauge(
    "mediamill_spool_budget_bytes",
    "Scratch space jobs may reserve: MEDIAMILL_SPOOL_BUDGET_BYTES, capped by free disk at start.",
)
SPOOL_RESERVED = Gauge(
    "mediamill_spool_reserved_bytes",
    "Scratch space reserved by running jobs; a job waits while its share does not fit.",
)
SPOOL_USED = Gauge(
    "mediamill_spool_used_bytes", "Bytes on disk in this worker's spool directory now."
)
SPOOL_DISK_FREE = Gauge(
    "mediamill_spool_disk_free_bytes", "Free bytes on the file system under the spool now."
)


def prepare(
    stages: Iterable[Stage], *, job_slots: int, cpu_slots: int, lanes: Iterable[str] = ("media",)
) -> None:
    """Set what this worker is, and export every known label value of each counter at 0.

    ``lanes`` are the queues this worker consumes: a lane it has not is not exported at all.
    """
    JOB_SLOTS.set(job_slots)
    CPU_SLOTS.set(cpu_slots)
    BUILD.info(build_versions())
    for lane in lanes:
        JOBS_IN_FLIGHT.labels(lane)
        RECEIVES.labels(lane)
        MESSAGES_RECEIVED.labels(lane)
        for outcome in JOB_OUTCOMES:
            JOBS.labels(outcome, lane)
    for operation in SQS_OPERATIONS:
        SQS_ERRORS.labels(operation)
    for reason in DLQ_REASONS:
        DLQ_BOUND.labels(reason)
    for action in SWEEP_ACTIONS:
        SWEPT.labels(action)
    for action in TASK_PROTECTION_ACTIONS:
        TASK_PROTECTION_ERRORS.labels(action)
    for outcome in LATENCY_OUTCOMES:
        UPLOAD_TO_DONE.labels(outcome)
    for stage in stages:
        if stage.cpu_bound:  # only a thread can be stuck
            STUCK_THREADS.labels(stage.name)
        if stage.optional:  # only an optional stage retries in-process
            OPTIONAL_STAGE_RETRIES.labels(stage.name)


# A few dozen operations at most: labels() once for each, not on every call.
_AWS_CALL_COUNTERS: dict[tuple[str, str], Counter] = {}


def count_aws_call(service: str, operation: str) -> None:
    counter = _AWS_CALL_COUNTERS.get((service, operation))
    if counter is None:
        counter = _AWS_CALL_COUNTERS[service, operation] = AWS_CALLS.labels(service, operation)
    counter.inc()


def aws_calls() -> dict[str, float]:
    """Calls so far as ``{"service.Operation": count}``, read from the counter (the bench's)."""
    return {
        f"{s.labels['aws_service']}.{s.labels['operation']}": s.value
        for family in AWS_CALLS.collect()
        for s in family.samples
        if s.name.endswith("_total")
    }


def build_versions() -> dict[str, str]:
    """The versions a deploy is told apart by, read from what is loaded, never typed in."""
    # The stages load both libraries anyway; here they are only asked what they are.
    import av
    import pyvips

    libvips = ".".join(str(pyvips.version(part)) for part in range(3))
    return {
        "version": version("mediamill"),
        "python": platform.python_version(),
        "libvips": libvips,
        "ffmpeg": str(av.ffmpeg_version_info),
    }
