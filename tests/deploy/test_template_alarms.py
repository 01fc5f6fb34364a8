"""The operators' alarms: each one there, on the right metric, mailed, and quiet when idle."""

from __future__ import annotations

from typing import Any

Metric = tuple[str, str, str]
# What each alarm watches (among others it may read): (namespace, metric, the resource in its
# dimensions), all in one alarm.
EXPECTED: dict[str, tuple[Metric, ...]] = {
    # Both lanes' dead letters: a failed reprocessing needs a person as much as a failed upload.
    "dead letters": (
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "MediaDeadLetterQueue"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "BackfillDeadLetterQueue"),
    ),
    # The latency goal is the fresh uploads': the backfill has none.
    "oldest message": (("AWS/SQS", "ApproximateAgeOfOldestMessage", "MediaQueue"),),
    "API 5xx": (("AWS/ApiGateway", "5xx", "HttpApi"),),
    "tasks at maximum": (("ECS/ContainerInsights", "RunningTaskCount", "WorkerService"),),
}


def _watched(alarm: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(namespace, metric, referenced resource) of every metric the alarm reads."""
    metrics = (
        [alarm]
        if "MetricName" in alarm
        else [
            query["MetricStat"]["Metric"]
            for query in alarm.get("Metrics", [])
            if "MetricStat" in query
        ]
    )
    watched = set()
    for metric in metrics:
        for dimension in metric.get("Dimensions", []):
            value = dimension["Value"]
            if isinstance(value, dict) and "Ref" in value:
                watched.add((metric["Namespace"], metric["MetricName"], value["Ref"]))
            elif isinstance(value, dict) and "Fn::GetAtt" in value:
                watched.add((metric["Namespace"], metric["MetricName"], value["Fn::GetAtt"][0]))
    return watched


def _notifying(template: Any) -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in template.of_type("AWS::CloudWatch::Alarm").items()
        if {"Ref": "AlarmTopic"} in resource["Properties"].get("AlarmActions", [])
    }


def test_the_alarm_set_is_complete(template: Any) -> None:
    alarms = _notifying(template)
    watched = {name: _watched(alarm) for name, alarm in alarms.items()}
    for purpose, expected in EXPECTED.items():
        owners = [name for name, metrics in watched.items() if set(expected) & metrics]
        assert len(owners) == 1, f"one alarm for {purpose} ({expected}), found {owners}"
        assert set(expected) <= watched[owners[0]], f"{owners[0]} watches {watched[owners[0]]}"
    assert len(alarms) == len(EXPECTED), "an alarm the operators' list does not know"


def test_every_alarm_treats_silence_as_fine_and_says_when_it_clears(template: Any) -> None:
    for name, alarm in _notifying(template).items():
        assert alarm["TreatMissingData"] == "notBreaching", name
        assert alarm["OKActions"] == [{"Ref": "AlarmTopic"}], name
        assert alarm.get("AlarmDescription"), name
        assert alarm["EvaluationPeriods"] >= alarm.get("DatapointsToAlarm", 1) >= 1, name


def _alarm_for(template: Any, purpose: str) -> dict[str, Any]:
    (alarm,) = [
        alarm
        for alarm in _notifying(template).values()
        if set(EXPECTED[purpose]) <= _watched(alarm)
    ]
    return alarm


def test_the_thresholds_come_from_the_parameters(template: Any) -> None:
    assert _alarm_for(template, "oldest message")["Threshold"] == {"Ref": "LatencyGoalSeconds"}
    tasks = _alarm_for(template, "tasks at maximum")
    assert tasks["Threshold"] == {"Ref": "MaxTasks"}
    assert tasks["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    dead_letters = _alarm_for(template, "dead letters")
    assert dead_letters["Threshold"] == 0
    assert dead_letters["ComparisonOperator"] == "GreaterThanThreshold"
    # A message in either DLQ breaches, and a DLQ SQS no longer reports (idle) counts as empty.
    (summed,) = [query for query in dead_letters["Metrics"] if query.get("ReturnData")]
    parts = [query["Id"] for query in dead_letters["Metrics"] if "MetricStat" in query]
    assert sorted(term.strip() for term in summed["Expression"].split("+")) == sorted(
        f"FILL({ref}, 0)" for ref in parts
    )
    errors = _alarm_for(template, "API 5xx")
    (returned,) = [query for query in errors["Metrics"] if query.get("ReturnData")]
    assert "errors" in returned["Expression"]
    assert "requests" in returned["Expression"]


def test_the_alarms_reach_the_operators_mail(template: Any) -> None:
    subscription = template.properties("AlarmEmailSubscription")
    assert subscription["TopicArn"] == {"Ref": "AlarmTopic"}
    assert subscription["Protocol"] == "email"
    assert subscription["Endpoint"] == {"Ref": "AlarmEmail"}
