"""Scaling on backlog per task, the 0 -> 1 step, and the service's deployment settings."""

from __future__ import annotations

from typing import Any


def _queries(metrics: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {query["Id"]: query for query in metrics}


def _lanes_counted(queries: dict[str, dict[str, Any]], stat: str) -> set[str]:
    """The queues whose visible messages the ``visible`` expression adds up, each filled with 0
    where SQS has stopped reporting an idle queue."""
    lanes = {}
    for ref, query in queries.items():
        if "MetricStat" not in query or query["MetricStat"]["Metric"]["Namespace"] != "AWS/SQS":
            continue
        metric = query["MetricStat"]
        assert metric["Stat"] == stat, ref
        assert metric["Metric"]["MetricName"] == "ApproximateNumberOfMessagesVisible", ref
        [dimension] = metric["Metric"]["Dimensions"]
        assert dimension["Name"] == "QueueName"
        lanes[ref] = dimension["Value"]["Fn::GetAtt"][0]
        assert query["ReturnData"] is False
    terms = [term.strip() for term in queries["visible"]["Expression"].split("+")]
    assert sorted(terms) == sorted(f"FILL({ref}, 0)" for ref in lanes)
    return set(lanes.values())


def test_the_scalable_target_spans_the_parameters(template: Any) -> None:
    target = template.properties("WorkerScalableTarget")
    assert target["MinCapacity"] == {"Ref": "MinTasks"}
    assert target["MaxCapacity"] == {"Ref": "MaxTasks"}
    assert template.resolve(target["ResourceId"]) == "service/<Cluster>/<WorkerService.Name>"


def test_target_tracking_holds_visible_messages_per_running_task(template: Any) -> None:
    policy = template.properties("BacklogPerTaskScaling")
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["ScalingTargetId"] == {"Ref": "WorkerScalableTarget"}
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == {"Ref": "BacklogPerTaskTarget"}
    assert tracking["ScaleOutCooldown"] <= tracking["ScaleInCooldown"]
    queries = _queries(tracking["CustomizedMetricSpecification"]["Metrics"])
    assert _lanes_counted(queries, "Sum") == {"MediaQueue", "BackfillQueue"}
    running = queries["running"]["MetricStat"]
    assert running["Stat"] == "Average"
    assert running["Metric"]["Namespace"] == "ECS/ContainerInsights"
    assert running["Metric"]["MetricName"] == "RunningTaskCount"
    returned = [query for query in queries.values() if query.get("ReturnData")]
    assert [query["Expression"] for query in returned] == ["visible / running"]
    assert all(query["ReturnData"] is False for query in queries.values() if query not in returned)


def test_the_first_task_starts_from_one_datapoint_only_when_scaled_to_zero(template: Any) -> None:
    assert template.data["Conditions"]["ScalesToZero"] == {"Fn::Equals": [{"Ref": "MinTasks"}, "0"]}
    policy = template.resources["ScaleFromZeroPolicy"]
    alarm = template.resources["ScaleFromZeroAlarm"]
    assert policy["Condition"] == alarm["Condition"] == "ScalesToZero"
    step = policy["Properties"]["StepScalingPolicyConfiguration"]
    # Exactly one task, never a change relative to however many run.
    assert step["AdjustmentType"] == "ExactCapacity"
    assert step["StepAdjustments"] == [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]
    properties = alarm["Properties"]
    assert properties["AlarmActions"] == [{"Ref": "ScaleFromZeroPolicy"}]
    assert properties["EvaluationPeriods"] == properties["DatapointsToAlarm"] == 1
    assert properties["Threshold"] == 0
    queries = _queries(properties["Metrics"])
    # A reprocessing run on an idle stack starts a task as a fresh upload does.
    assert _lanes_counted(queries, "Maximum") == {"MediaQueue", "BackfillQueue"}
    assert queries["desired"]["MetricStat"]["Metric"]["MetricName"] == "DesiredTaskCount"
    (returned,) = [query for query in queries.values() if query.get("ReturnData")]
    # Breaches only while no task is wanted: a busy fleet never hears from this policy.
    assert "FILL(desired, 0) == 0" in returned["Expression"]


def test_deployments_keep_capacity_and_roll_back(template: Any) -> None:
    service = template.properties("WorkerService")
    deployment = service["DeploymentConfiguration"]
    assert deployment["MinimumHealthyPercent"] == 100
    assert deployment["MaximumPercent"] == 200
    assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert "DesiredCount" not in service  # scaling owns it; a stack update must not reset it
    assert "LoadBalancers" not in service
    assert service["PropagateTags"] == "SERVICE"
    assert template.resources["WorkerService"]["DependsOn"] == "ClusterCapacityProviders"


def test_the_cluster_reports_what_scaling_reads(template: Any) -> None:
    settings = template.properties("Cluster")["ClusterSettings"]
    assert {"Name": "containerInsights", "Value": "enhanced"} in settings
    providers = template.properties("ClusterCapacityProviders")["CapacityProviders"]
    assert set(providers) == {"FARGATE", "FARGATE_SPOT"}


def test_the_tasks_take_no_inbound_traffic(template: Any) -> None:
    group = template.properties("TaskSecurityGroup")
    assert "SecurityGroupIngress" not in group
    assert [(rule["FromPort"], rule["ToPort"]) for rule in group["SecurityGroupEgress"]] == [
        (443, 443)
    ]
    network = template.properties("WorkerService")["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["SecurityGroups"] == [{"Ref": "TaskSecurityGroup"}]
    assert template.parameters["AssignPublicIp"]["Default"] == "DISABLED"
