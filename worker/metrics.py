"""Prometheus metrics, one definition each; the worker's HTTP side serves them on /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800)
_LATENCY_BUCKETS = (0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 7200)

JOBS = Counter(
    "mediamill_jobs_total",
    "Jobs finished, by outcome (ready, failed, duplicate, retry, error, released, ignored).",
    ["outcome"],
)
JOBS_IN_FLIGHT = Gauge("mediamill_jobs_in_flight", "Jobs running now in this worker.")
STAGE_SECONDS = Histogram(
    "mediamill_stage_duration_seconds",
    "Time spent in one stage of one job.",
    ["stage", "kind", "outcome"],
    buckets=_STAGE_BUCKETS,
)
UPLOAD_TO_DONE = Histogram(
    "mediamill_upload_to_done_seconds",
    "From the S3 event time of an upload to its item being READY or FAILED.",
    ["outcome"],
    buckets=_LATENCY_BUCKETS,
)
RECEIVES = Counter("mediamill_sqs_receives_total", "ReceiveMessage calls.")
MESSAGES_RECEIVED = Counter("mediamill_sqs_messages_received_total", "Messages received.")
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
SWEPT = Counter(
    "mediamill_sweep_settled_total",
    "Items the sweep settled: owed events sent (announced), uploads whose every try killed "
    "the worker marked FAILED (abandoned).",
    ["action"],
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
