"""Writes mediamill.json, the operators' Grafana dashboard: `python deploy/ecs/grafana/build.py`
(`--print` writes it to stdout instead).

The JSON is generated so that every panel is built one way and the numbers it shows against are
set once; tests/deploy/test_grafana_dashboard.py checks that the committed file is this script's
output. It imports as is into Grafana 10 or later: its data sources are the `prometheus`
(Amazon Managed Service for Prometheus) and `cloudwatch` variables. deploy/ecs/README.md
("Read the dashboard") says what each panel means and what healthy looks like.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from panels import (
    RATE,
    SEL,
    Json,
    cw_math,
    fleet,
    heatmap,
    increase,
    label_values,
    layout,
    per_second,
    per_task,
    prom,
    source,
    sqs,
    table,
    tasks,
    textbox,
    timeseries,
)

OUT = Path(__file__).with_name("mediamill.json")
# Defaults of the variables an operator sets to the stack's own values. The backlog target is
# the template's BacklogPerTaskTarget; the latency goal equals the recorded
# mediamill:upload_to_done_goal_seconds of deploy/ecs/prometheus/alerts.yaml (a test checks).
STACK = "mediamill"
BACKLOG_TARGET = 100
LATENCY_GOAL_SECONDS = 300


def queue_and_fleet() -> list[Json]:
    both = "FILL(media, 0) + FILL(backfill, 0)"
    return [
        timeseries(
            "Backlog and backlog per task",
            "Visible messages on the media and the backfill queue (right axis), and both "
            "together ÷ running tasks (0 tasks counted as 1) against the scaling target.",
            [
                sqs("media", "ApproximateNumberOfMessagesVisible"),
                sqs("backfill", "ApproximateNumberOfMessagesVisible", "$backfill_queue"),
                tasks("running", "RunningTaskCount"),
                cw_math("per_task", f"IF(running > 0, ({both}) / running, {both})", "per task"),
                cw_math("target", "FILL(media, 0) * 0 + $backlog_target", "target"),
            ],
            hidden=("running",),
            right=("media", "backfill"),
        ),
        timeseries(
            "Age of the oldest message",
            "How long the oldest message has waited on each queue; the latency goal is the "
            "media queue's (fresh uploads).",
            [
                sqs("media", "ApproximateAgeOfOldestMessage"),
                sqs("backfill", "ApproximateAgeOfOldestMessage", "$backfill_queue"),
                cw_math("goal", "FILL(media, 0) * 0 + $latency_goal", "latency goal"),
            ],
            unit="s",
        ),
        timeseries(
            "Running and desired tasks",
            "The worker service's tasks (Container Insights): desired, running, pending.",
            [
                tasks("desired", "DesiredTaskCount"),
                tasks("running", "RunningTaskCount"),
                tasks("pending", "PendingTaskCount"),
            ],
        ),
        timeseries(
            "Dead-letter queues",
            "Messages in each lane's DLQ: each one is a message no worker could finish.",
            [
                sqs("media_dlq", "ApproximateNumberOfMessagesVisible", "$dlq"),
                sqs("backfill_dlq", "ApproximateNumberOfMessagesVisible", "$backfill_dlq"),
            ],
        ),
    ]


def jobs() -> list[Json]:
    ready = f'mediamill_upload_to_done_seconds_bucket{{{SEL}, outcome="ready"}}'
    quantiles = [
        prom(f"histogram_quantile({q}, sum by (le) (rate({ready}[$__rate_interval])))", f"p{p}")
        for q, p in (("0.5", "50"), ("0.95", "95"), ("0.99", "99"))
    ]
    return [
        timeseries(
            "Throughput by outcome",
            "Uploads and messages handled per second, by outcome.",
            [per_second("mediamill_jobs_total", "{{outcome}}", "outcome")],
            unit="ops",
            stack=True,
        ),
        timeseries(
            "Jobs by lane",
            "Jobs that came to an end (READY or FAILED) per second, by the lane they came by: "
            "fresh uploads (media) and reprocessing (backfill).",
            [
                per_second(
                    "mediamill_jobs_total", "{{lane}}", "lane", extra=', outcome=~"ready|failed"'
                )
            ],
            unit="ops",
            stack=True,
        ),
        timeseries(
            "Upload to READY",
            "Fresh uploads (the media lane) from the S3 event to READY: p50, p95 and p99, "
            "against the latency goal.",
            [*quantiles, prom("mediamill:upload_to_done_goal_seconds", "latency goal")],
            unit="s",
        ),
        timeseries(
            "Jobs in flight and slots",
            "Jobs running across the fleet, by lane, against the job slots of the running tasks.",
            [
                prom(f"sum by (lane) (mediamill_jobs_in_flight{{{SEL}}})", "in flight: {{lane}}"),
                fleet("mediamill_job_slots", "slots"),
            ],
        ),
        timeseries(
            "Released on shutdown",
            "Messages handed back with visibility 0 by stopping tasks (scale-in, deploys, Spot).",
            [increase("mediamill_sqs_messages_released_total", "released")],
            bars=True,
        ),
        timeseries(
            "Left for the DLQ, by reason",
            "Messages that failed on their last allowed receive, so SQS moves them to the DLQ.",
            [increase("mediamill_messages_left_for_dlq_total", "{{reason}}", "reason")],
            bars=True,
        ),
        timeseries(
            "Malformed messages, orphans, killers",
            "Bodies that are not upload events; upload events with no item; uploads that "
            "killed their worker on every try.",
            [
                increase("mediamill_malformed_messages_total", "malformed"),
                increase("mediamill_orphan_uploads_total", "orphans"),
                increase("mediamill_uploads_killing_workers_total", "killed their worker"),
            ],
            bars=True,
        ),
        timeseries(
            "Sweep",
            "What the sweep settled: owed events sent, abandoned uploads ended FAILED.",
            [increase("mediamill_sweep_settled_total", "{{action}}", "action")],
            bars=True,
        ),
        timeseries(
            "Stuck uploads",
            "Items PROCESSING longer than a try and the wait for the next may take. One task "
            "holds the check and exports the count; the others export nothing, so the max "
            "across tasks is the count.",
            [prom(f"max(mediamill_stuck_items{{{SEL}}})", "stuck")],
        ),
    ]


def stages() -> list[Json]:
    buckets = "mediamill_stage_duration_seconds_bucket"
    one_stage = f'{buckets}{{{SEL}, stage="$stage", kind=~"$kind"}}'
    by_kind = f'{buckets}{{{SEL}, kind=~"$kind"}}'
    return [
        heatmap(
            "Stage duration: $stage",
            "How long each run of the stage took, for the kinds chosen above.",
            f"sum by (le) (increase({one_stage}[$__rate_interval]))",
            repeat="stage",
        ),
        timeseries(
            "Stage p95 by stage and kind",
            "The 95th percentile of each stage's time, per media kind.",
            [
                prom(
                    "histogram_quantile(0.95, sum by (le, stage, kind) "
                    f"(rate({by_kind}[$__rate_interval])))",
                    "{{stage}} {{kind}}",
                )
            ],
            unit="s",
        ),
        timeseries(
            "Optional-stage retries",
            "In-process retries of optional stages (tagging) after a transient error.",
            [increase("mediamill_optional_stage_retries_total", "{{stage}}", "stage")],
            bars=True,
        ),
        timeseries(
            "Stuck stage threads",
            "Threads running past their stage's timeout and the grace, now and as they "
            "happened, against the CPU slots they take from.",
            [
                fleet("mediamill_stage_threads_stuck", "stuck now"),
                increase("mediamill_stuck_stage_threads_total", "new: {{stage}}", "stage"),
                fleet("mediamill_cpu_slots", "CPU slots"),
            ],
        ),
    ]


def sqs_calls() -> list[Json]:
    return [
        timeseries(
            "SQS errors",
            "SQS calls that failed after botocore's retries, by operation.",
            [per_second("mediamill_sqs_errors_total", "{{operation}}", "operation")],
            unit="reqps",
        ),
        timeseries(
            "SQS calls",
            "Receives and messages received by lane, deletes and heartbeat visibility extensions.",
            [
                per_second("mediamill_sqs_receives_total", "receive calls: {{lane}}", "lane"),
                per_second(
                    "mediamill_sqs_messages_received_total", "messages received: {{lane}}", "lane"
                ),
                per_second("mediamill_sqs_deletes_total", "deletes"),
                per_second("mediamill_sqs_visibility_extensions_total", "visibility extensions"),
            ],
            unit="reqps",
        ),
        timeseries(
            "AWS calls per upload",
            "Every AWS API call the workers make, by service and operation, per upload ended "
            "(READY or FAILED): what S3, DynamoDB, SNS and Rekognition bill a photo for.",
            [
                prom(
                    "sum by (aws_service, operation) "
                    f"(rate(mediamill_aws_calls_total{{{SEL}}}[{RATE}])) / scalar(sum "
                    f'(rate(mediamill_jobs_total{{{SEL}, outcome=~"ready|failed"}}[{RATE}])))',
                    "{{aws_service}} {{operation}}",
                )
            ],
        ),
    ]


def worker() -> list[Json]:
    versions = f"count by (version, python, libvips, ffmpeg) (mediamill_build_info{{{SEL}}})"
    return [
        timeseries(
            "Spool per task",
            "Scratch space per task: reserved by running jobs and on disk, against the budget "
            "and the disk's free space.",
            [
                per_task("mediamill_spool_reserved_bytes", "reserved "),
                per_task("mediamill_spool_used_bytes", "on disk "),
                per_task("mediamill_spool_budget_bytes", "budget "),
                per_task("mediamill_spool_disk_free_bytes", "disk free "),
            ],
            unit="bytes",
        ),
        timeseries(
            "Scale-in protection",
            "Tasks the ECS agent has confirmed as protected from scale-in (those with jobs in "
            "flight), and failed calls to the agent by action; a failure never stops a job.",
            [
                fleet("mediamill_task_protected", "protected tasks"),
                per_second("mediamill_task_protection_errors_total", "{{action}} errors", "action"),
            ],
        ),
        timeseries(
            "Memory per task",
            "The worker process's resident memory, per task; the task's memory is its limit.",
            [per_task("process_resident_memory_bytes", "")],
            unit="bytes",
        ),
        timeseries(
            "CPU per task",
            "CPU seconds per second the worker process uses, per task (1 is one vCPU).",
            [per_second("process_cpu_seconds_total", "{{task_id}}", "task_id")],
        ),
        table(
            "Versions running",
            "Tasks by the versions they run: mediamill, Python, libvips, FFmpeg.",
            prom(versions, instant=True, fmt="table"),
        ),
    ]


def variables() -> list[Json]:
    stage_series = f"mediamill_stage_duration_seconds_count{{{SEL}}}"
    return [
        source("prometheus", "prometheus", "Prometheus (AMP)"),
        source("cloudwatch", "cloudwatch", "CloudWatch"),
        textbox("region", "Region", "default"),
        textbox("queue", "Media queue", f"{STACK}-media-jobs"),
        textbox("dlq", "Dead-letter queue", f"{STACK}-media-jobs-dlq"),
        textbox("backfill_queue", "Backfill queue", f"{STACK}-backfill-jobs"),
        textbox("backfill_dlq", "Backfill dead-letter queue", f"{STACK}-backfill-jobs-dlq"),
        textbox("cluster", "ECS cluster", STACK),
        textbox("service", "ECS service", f"{STACK}-worker"),
        textbox("backlog_target", "Backlog per task target", str(BACKLOG_TARGET)),
        textbox("latency_goal", "Latency goal (s)", str(LATENCY_GOAL_SECONDS)),
        label_values("stage", "Stage", f"label_values({stage_series}, stage)"),
        label_values("kind", "Kind", f"label_values({stage_series}, kind)"),
    ]


def dashboard() -> Json:
    rows = [
        ("Queue and fleet", queue_and_fleet()),
        ("Jobs", jobs()),
        ("Stages", stages()),
        ("SQS", sqs_calls()),
        ("Worker", worker()),
    ]
    return {
        "uid": "mediamill",
        "title": "mediamill",
        "description": "The media worker on ECS; deploy/ecs/README.md says how to read it.",
        "tags": ["mediamill"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "timezone": "browser",
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "1m",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "links": [],
        "annotations": {"list": []},
        "templating": {"list": variables()},
        "panels": layout(rows),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--print"]:
        sys.stdout.write(render())
    else:
        OUT.write_text(render())
        sys.stdout.write(f"wrote {OUT}\n")
