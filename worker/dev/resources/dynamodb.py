"""AWS::DynamoDB::Table: keys, indexes, billing, encryption, then TTL and point-in-time recovery."""

from __future__ import annotations

from worker.dev.evaluation import Evaluation, Made
from worker.dev.resources.translate import (
    Props,
    Services,
    flag,
    named,
    refuse_unknown,
    refuse_untranslated,
    renamed,
    tags,
)
from worker.dev.template import Resource

# Passed to CreateTable as written: CloudFormation's shape is the API's.
_AS_GIVEN = {
    "AttributeDefinitions",
    "KeySchema",
    "BillingMode",
    "LocalSecondaryIndexes",
    "TableClass",
}
_TRANSLATED = {
    "TableName",
    "Tags",
    "DeletionProtectionEnabled",
    "ProvisionedThroughput",
    "OnDemandThroughput",
    "WarmThroughput",
    "GlobalSecondaryIndexes",
    "StreamSpecification",
    "SSESpecification",
    "TimeToLiveSpecification",
    "PointInTimeRecoverySpecification",
}
# Contributor Insights, Kinesis streaming and imports from S3 happen in the cloud only, and a
# resource policy guards callers moto does not authenticate.
_NOT_LOCAL = {
    "ContributorInsightsSpecification",
    "KinesisStreamSpecification",
    "ImportSourceSpecification",
    "ResourcePolicy",
}
_INDEX = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput", "OnDemandThroughput")


def table(services: Services, evaluation: Evaluation, resource: Resource, props: Props) -> Made:
    refuse_untranslated(resource, props, _AS_GIVEN | _TRANSLATED | _NOT_LOCAL)
    ddb, name, where = (
        services.dynamodb,
        named(evaluation, resource, "TableName"),
        resource.logical_id,
    )
    create: Props = {"TableName": name, **{k: v for k, v in props.items() if k in _AS_GIVEN}}
    # Numbers and flags may arrive as text from a parameter (Ref passes parameters on as text).
    for units in ("ProvisionedThroughput", "OnDemandThroughput", "WarmThroughput"):
        if units in props:
            create[units] = _throughput(props[units])
    if "DeletionProtectionEnabled" in props:
        create["DeletionProtectionEnabled"] = flag(props["DeletionProtectionEnabled"])
    if "GlobalSecondaryIndexes" in props:
        create["GlobalSecondaryIndexes"] = [
            _index(index, f"{where}.GlobalSecondaryIndexes")
            for index in props["GlobalSecondaryIndexes"]
        ]
    if "StreamSpecification" in props:
        create["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    if "SSESpecification" in props:
        sse = renamed(
            props["SSESpecification"],
            {"SSEEnabled": "Enabled", "SSEType": "SSEType", "KMSMasterKeyId": "KMSMasterKeyId"},
            f"{where}.SSESpecification",
        )
        create["SSESpecification"] = {**sse, "Enabled": flag(sse.get("Enabled"))}
    if "Tags" in props:
        create["Tags"] = tags(props["Tags"])
    made = ddb.create_table(**create)["TableDescription"]
    if "TimeToLiveSpecification" in props:
        ttl = props["TimeToLiveSpecification"]
        ddb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={
                "Enabled": flag(ttl["Enabled"]),
                "AttributeName": ttl["AttributeName"],
            },
        )
    if "PointInTimeRecoverySpecification" in props:
        pitr = dict(props["PointInTimeRecoverySpecification"])
        pitr["PointInTimeRecoveryEnabled"] = flag(pitr.get("PointInTimeRecoveryEnabled"))
        if "RecoveryPeriodInDays" in pitr:
            pitr["RecoveryPeriodInDays"] = int(pitr["RecoveryPeriodInDays"])
        ddb.update_continuous_backups(TableName=name, PointInTimeRecoverySpecification=pitr)
    attributes = {"Arn": made["TableArn"]}
    if "LatestStreamArn" in made:
        attributes["StreamArn"] = made["LatestStreamArn"]
    return Made(ref=name, attributes=attributes)


def _throughput(value: Props) -> Props:
    return {key: int(units) for key, units in value.items()}


def _index(index: Props, where: str) -> Props:
    # Contributor Insights on an index is cloud-only, as on the table.
    api = {k: v for k, v in index.items() if k != "ContributorInsightsSpecification"}
    refuse_unknown(api, _INDEX, where)
    for units in ("ProvisionedThroughput", "OnDemandThroughput"):
        if units in api:
            api[units] = _throughput(api[units])
    return api
