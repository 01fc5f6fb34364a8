"""The SNS and SQS types: topics, their policies and subscriptions; queues and their policies."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from worker.dev.evaluation import Evaluation, Made
from worker.dev.resources.translate import (
    Make,
    Props,
    Services,
    attribute,
    named,
    refuse_untranslated,
    tags,
)
from worker.dev.template import Resource

_TOPIC_ATTRIBUTES = {
    "DisplayName",
    "KmsMasterKeyId",
    "FifoTopic",
    "ContentBasedDeduplication",
    "SignatureVersion",
    "TracingConfig",
    "ArchivePolicy",
}
# Delivery status is logged to CloudWatch Logs and data protection audited to a log
# destination: cloud-only, as those are.
_TOPIC_NOT_LOCAL = {"DeliveryStatusLogging", "DataProtectionPolicy"}


def topic(services: Services, evaluation: Evaluation, resource: Resource, props: Props) -> Made:
    known = {"TopicName", "Tags", "Subscription"} | _TOPIC_ATTRIBUTES | _TOPIC_NOT_LOCAL
    refuse_untranslated(resource, props, known)
    name = named(evaluation, resource, "TopicName")
    create: Props = {
        "Name": name,
        "Attributes": {k: attribute(v) for k, v in props.items() if k in _TOPIC_ATTRIBUTES},
    }
    if "Tags" in props:
        create["Tags"] = tags(props["Tags"])
    arn = services.sns.create_topic(**create)["TopicArn"]
    for inline in props.get("Subscription", []):
        # As for AWS::SNS::Subscription: only a queue can be delivered to locally.
        if inline["Protocol"] == "sqs":
            services.sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=inline["Endpoint"])
    return Made(ref=arn, attributes={"TopicArn": arn, "TopicName": name})


def policy_of(setter: Callable[[Services, str, str], object], targets: str) -> Make:
    """AWS::SNS::TopicPolicy or AWS::SQS::QueuePolicy: one document set on each target.

    Stored as written, conditions and all: moto does not enforce SNS or SQS policies on its
    own deliveries, so keeping them costs nothing and lets a test read what was set.
    """

    def make(services: Services, evaluation: Evaluation, resource: Resource, props: Props) -> Made:
        refuse_untranslated(resource, props, {targets, "PolicyDocument"})
        listed = props[targets]
        for target in listed if isinstance(listed, list) else [listed]:
            setter(services, target, json.dumps(props["PolicyDocument"]))
        return Made(ref=f"{evaluation.pseudo.stack_name}-{resource.logical_id}", attributes={})

    return make


def set_topic_policy(services: Services, arn: str, document: str) -> object:
    return services.sns.set_topic_attributes(
        TopicArn=arn, AttributeName="Policy", AttributeValue=document
    )


def set_queue_policy(services: Services, url: str, document: str) -> object:
    return services.sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": document})


_SUBSCRIPTION_ATTRIBUTES = {
    "RawMessageDelivery",
    "FilterPolicy",
    "FilterPolicyScope",
    "RedrivePolicy",
    "DeliveryPolicy",
    "SubscriptionRoleArn",
    "ReplayPolicy",
}


def subscription(
    services: Services, evaluation: Evaluation, resource: Resource, props: Props
) -> Made:
    known = {"TopicArn", "Protocol", "Endpoint"} | _SUBSCRIPTION_ATTRIBUTES
    refuse_untranslated(resource, props, known)
    arn = services.sns.subscribe(
        TopicArn=props["TopicArn"],
        Protocol=props["Protocol"],
        Endpoint=props["Endpoint"],
        Attributes={k: attribute(v) for k, v in props.items() if k in _SUBSCRIPTION_ATTRIBUTES},
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]
    return Made(ref=arn, attributes={"Arn": arn})


def delivered_only_in_the_cloud(prop: Callable[[str], Any]) -> str | None:
    """Why a subscription is not made locally (email, SMS, HTTPS, Lambda ...), or None."""
    protocol = prop("Protocol")
    if protocol == "sqs":
        return None
    return f"SNS delivers to {protocol} endpoints only in the cloud; locally, only to queues"


_QUEUE_ATTRIBUTES = {
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "DelaySeconds",
    "FifoQueue",
    "FifoThroughputLimit",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "RedriveAllowPolicy",
    "RedrivePolicy",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
}


def queue(services: Services, evaluation: Evaluation, resource: Resource, props: Props) -> Made:
    refuse_untranslated(resource, props, {"QueueName", "Tags"} | _QUEUE_ATTRIBUTES)
    name = named(evaluation, resource, "QueueName")
    create: Props = {
        "QueueName": name,
        # Each property is the attribute of the same name; RedrivePolicy goes as JSON.
        "Attributes": {k: attribute(v) for k, v in props.items() if k in _QUEUE_ATTRIBUTES},
    }
    if "Tags" in props:
        create["tags"] = {tag["Key"]: tag["Value"] for tag in tags(props["Tags"])}
    url = services.sqs.create_queue(**create)["QueueUrl"]
    pseudo = evaluation.pseudo
    arn = f"arn:{pseudo.partition}:sqs:{pseudo.region}:{pseudo.account_id}:{name}"
    return Made(ref=url, attributes={"Arn": arn, "QueueName": name, "QueueUrl": url})
