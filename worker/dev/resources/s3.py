"""AWS::S3::Bucket and AWS::S3::BucketPolicy, made with S3's own API calls."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from worker.dev.evaluation import Evaluation, Made
from worker.dev.resources.translate import (
    Props,
    Services,
    UntranslatedProperty,
    flag,
    named,
    refuse_unknown,
    refuse_untranslated,
    renamed,
    tags,
)
from worker.dev.template import Resource

_CANNED_ACL = {
    "Private": "private",
    "PublicRead": "public-read",
    "PublicReadWrite": "public-read-write",
    "AuthenticatedRead": "authenticated-read",
    "LogDeliveryWrite": "log-delivery-write",
    "BucketOwnerRead": "bucket-owner-read",
    "BucketOwnerFullControl": "bucket-owner-full-control",
    "AwsExecRead": "aws-exec-read",
}
_NOT_LOCAL = {
    # moto delivers no access logs, and turns logging on only when the log bucket's policy
    # grants logging.s3.amazonaws.com without conditions, which it cannot honour (see below).
    "LoggingConfiguration",
    # Analytics, inventory and metrics reports and replication happen in the cloud only.
    "AnalyticsConfigurations",
    "InventoryConfigurations",
    "MetricsConfigurations",
    "ReplicationConfiguration",
}


def bucket(services: Services, evaluation: Evaluation, resource: Resource, props: Props) -> Made:
    s3, name, where = services.s3, named(evaluation, resource, "BucketName"), resource.logical_id
    # In the order CloudFormation applies them; notifications last, since S3 checks each
    # destination and sends it a test event.
    steps: dict[str, Callable[[Any], object]] = {
        "OwnershipControls": lambda v: s3.put_bucket_ownership_controls(
            Bucket=name, OwnershipControls=v
        ),
        "PublicAccessBlockConfiguration": lambda v: s3.put_public_access_block(
            Bucket=name, PublicAccessBlockConfiguration={k: flag(on) for k, on in v.items()}
        ),
        "BucketEncryption": lambda v: s3.put_bucket_encryption(
            Bucket=name, ServerSideEncryptionConfiguration=_encryption(v, where)
        ),
        "VersioningConfiguration": lambda v: s3.put_bucket_versioning(
            Bucket=name, VersioningConfiguration=v
        ),
        "CorsConfiguration": lambda v: s3.put_bucket_cors(
            Bucket=name,
            CORSConfiguration={"CORSRules": [_cors_rule(r, where) for r in v["CorsRules"]]},
        ),
        "LifecycleConfiguration": lambda v: s3.put_bucket_lifecycle_configuration(
            Bucket=name,
            LifecycleConfiguration={"Rules": [_lifecycle_rule(r, where) for r in v["Rules"]]},
        ),
        "Tags": lambda v: s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tags(v)}),
        "NotificationConfiguration": lambda v: s3.put_bucket_notification_configuration(
            Bucket=name, NotificationConfiguration=_notifications(v, where)
        ),
    }
    created_with = {"BucketName", "AccessControl", "ObjectLockEnabled"}
    refuse_untranslated(resource, props, created_with | set(steps) | _NOT_LOCAL)
    create: Props = {"Bucket": name}
    if evaluation.pseudo.region != "us-east-1":
        create["CreateBucketConfiguration"] = {"LocationConstraint": evaluation.pseudo.region}
    if "AccessControl" in props:
        create["ACL"] = _CANNED_ACL[props["AccessControl"]]
    if "ObjectLockEnabled" in props:
        create["ObjectLockEnabledForBucket"] = flag(props["ObjectLockEnabled"])
    s3.create_bucket(**create)
    for prop, step in steps.items():
        if prop in props:
            step(props[prop])
    pseudo = evaluation.pseudo
    host = f"{name}.s3.{pseudo.region}.{pseudo.url_suffix}"
    return Made(
        ref=name,
        attributes={
            "Arn": f"arn:{pseudo.partition}:s3:::{name}",
            "DomainName": f"{name}.s3.{pseudo.url_suffix}",
            "RegionalDomainName": host,
            "DualStackDomainName": f"{name}.s3.dualstack.{pseudo.region}.{pseudo.url_suffix}",
            "WebsiteURL": f"http://{name}.s3-website-{pseudo.region}.{pseudo.url_suffix}",
        },
    )


def _encryption(value: Props, where: str) -> Props:
    names = {
        "ServerSideEncryptionByDefault": "ApplyServerSideEncryptionByDefault",
        "BucketKeyEnabled": "BucketKeyEnabled",
    }
    rules = []
    for rule in value["ServerSideEncryptionConfiguration"]:
        api = renamed(rule, names, f"{where}.BucketEncryption")
        if "BucketKeyEnabled" in api:
            api["BucketKeyEnabled"] = flag(api["BucketKeyEnabled"])
        rules.append(api)
    return {"Rules": rules}


def _cors_rule(rule: Props, where: str) -> Props:
    names = {
        "Id": "ID",
        "AllowedHeaders": "AllowedHeaders",
        "AllowedMethods": "AllowedMethods",
        "AllowedOrigins": "AllowedOrigins",
        "ExposedHeaders": "ExposeHeaders",
        "MaxAge": "MaxAgeSeconds",
    }
    api = renamed(rule, names, f"{where}.CorsConfiguration")
    if "MaxAgeSeconds" in api:
        api["MaxAgeSeconds"] = int(api["MaxAgeSeconds"])
    return api


def _lifecycle_rule(rule: Props, where: str) -> Props:
    where = f"{where}.LifecycleConfiguration.Rules[{rule.get('Id', '?')}]"
    rule = dict(rule)
    api: Props = {"Status": rule.pop("Status")}
    if "Id" in rule:
        api["ID"] = rule.pop("Id")
    # The filter: one condition on its own, several under And, as the API wants them.
    conditions: Props = {}
    if "Prefix" in rule:
        conditions["Prefix"] = rule.pop("Prefix")
    if "TagFilters" in rule:
        conditions["Tags"] = rule.pop("TagFilters")
    for size in ("ObjectSizeGreaterThan", "ObjectSizeLessThan"):
        if size in rule:
            conditions[size] = int(rule.pop(size))
    if len(conditions) > 1 or len(conditions.get("Tags", [])) > 1:
        api["Filter"] = {"And": conditions}
    elif "Tags" in conditions:
        api["Filter"] = {"Tag": conditions["Tags"][0]}
    else:
        api["Filter"] = conditions or {"Prefix": ""}
    # Counts may arrive as text from a parameter (Ref passes parameters on as text).
    expiration: Props = {}
    if "ExpirationInDays" in rule:
        expiration["Days"] = int(rule.pop("ExpirationInDays"))
    if "ExpirationDate" in rule:
        expiration["Date"] = rule.pop("ExpirationDate")
    if "ExpiredObjectDeleteMarker" in rule:
        expiration["ExpiredObjectDeleteMarker"] = flag(rule.pop("ExpiredObjectDeleteMarker"))
    if expiration:
        api["Expiration"] = expiration
    if "AbortIncompleteMultipartUpload" in rule:
        days = int(rule.pop("AbortIncompleteMultipartUpload")["DaysAfterInitiation"])
        api["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
    if "NoncurrentVersionExpiration" in rule:
        noncurrent = rule.pop("NoncurrentVersionExpiration")
        api["NoncurrentVersionExpiration"] = {k: int(v) for k, v in noncurrent.items()}
    if "NoncurrentVersionExpirationInDays" in rule:
        days = int(rule.pop("NoncurrentVersionExpirationInDays"))
        api["NoncurrentVersionExpiration"] = {"NoncurrentDays": days}
    transitions = [*rule.pop("Transitions", []), *filter(None, [rule.pop("Transition", None)])]
    if transitions:
        names = {
            "StorageClass": "StorageClass",
            "TransitionInDays": "Days",
            "TransitionDate": "Date",
        }
        api["Transitions"] = [_days_as_numbers(renamed(t, names, where)) for t in transitions]
    if rule:
        raise UntranslatedProperty(f"{where}: the dev stack does not translate {', '.join(rule)}")
    return api


def _days_as_numbers(value: Props) -> Props:
    return {k: int(v) if k == "Days" else v for k, v in value.items()}


def _notifications(config: Props, where: str) -> Props:
    where = f"{where}.NotificationConfiguration"
    known = ("TopicConfigurations", "QueueConfigurations", "LambdaConfigurations")
    refuse_unknown(config, (*known, "EventBridgeConfiguration"), where)
    api: Props = {}
    for listed, target, api_target in (
        ("TopicConfigurations", "Topic", "TopicArn"),
        ("QueueConfigurations", "Queue", "QueueArn"),
    ):
        for item in config.get(listed, []):
            refuse_unknown(item, (target, "Event", "Filter"), f"{where}.{listed}")
            entry: Props = {api_target: item[target], "Events": [item["Event"]]}
            if "Filter" in item:
                entry["Filter"] = {"Key": {"FilterRules": item["Filter"]["S3Key"]["Rules"]}}
            api.setdefault(listed, []).append(entry)
    # LambdaConfigurations are left out: the functions they would invoke are cloud-only.
    if flag(config.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled")):
        api["EventBridgeConfiguration"] = {}
    return api


def bucket_policy(
    services: Services, evaluation: Evaluation, resource: Resource, props: Props
) -> Made:
    refuse_untranslated(resource, props, {"Bucket", "PolicyDocument"})
    document = props["PolicyDocument"]
    listed = document["Statement"]
    # moto judges a statement's Condition with no request context, so any statement with a
    # condition that names an object action denies that action, Allow and Deny alike: a
    # TLS-only deny or a CloudFront-only read would stop every local PutObject or GetObject.
    # Such statements are left out here (TLS, CloudFront and the service principals they guard
    # have no counterpart on plain-HTTP loopback); statements without conditions stand.
    kept = [s for s in (listed if isinstance(listed, list) else [listed]) if "Condition" not in s]
    if kept:
        services.s3.put_bucket_policy(
            Bucket=props["Bucket"], Policy=json.dumps({**document, "Statement": kept})
        )
    return Made(ref=str(props["Bucket"]), attributes={})
