"""The template's resource types: those moto serves, made through the services' own APIs, and the
cloud-only ones, each with the reason it is not made locally.

moto's own CloudFormation is not used: it reports success while it drops S3 notification
configurations and bucket and queue policies. A served resource's every property is translated
to the call CloudFormation itself would make, or stops provisioning with the property's name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from worker.dev.evaluation import Evaluation, Made
from worker.dev.resources import dynamodb, messaging, s3
from worker.dev.resources.cloud_only import CLOUD_ONLY, placeholder
from worker.dev.resources.translate import Make, Services, UntranslatedProperty, named
from worker.dev.template import Resource, Template

__all__ = [
    "CLOUD_ONLY",
    "SERVED",
    "Served",
    "Services",
    "UntranslatedProperty",
    "make_served",
    "not_made_locally",
    "physical_name",
    "stand_in",
    "unlisted_types",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Served:
    make: Make
    name_property: str | None = None
    # Given a way to read one property: why this resource is cloud-only after all, or None.
    cloud_only_when: Callable[[Callable[[str], Any]], str | None] | None = None


SERVED: Mapping[str, Served] = {
    "AWS::S3::Bucket": Served(s3.bucket, name_property="BucketName"),
    "AWS::S3::BucketPolicy": Served(s3.bucket_policy),
    "AWS::SNS::Topic": Served(messaging.topic, name_property="TopicName"),
    "AWS::SNS::TopicPolicy": Served(messaging.policy_of(messaging.set_topic_policy, "Topics")),
    "AWS::SNS::Subscription": Served(
        messaging.subscription, cloud_only_when=messaging.delivered_only_in_the_cloud
    ),
    "AWS::SQS::Queue": Served(messaging.queue, name_property="QueueName"),
    "AWS::SQS::QueuePolicy": Served(messaging.policy_of(messaging.set_queue_policy, "Queues")),
    "AWS::DynamoDB::Table": Served(dynamodb.table, name_property="TableName"),
}


def unlisted_types(template: Template) -> set[str]:
    """Resource types in the template that are neither served nor listed as cloud-only."""
    return {r.type for r in template.resources.values()} - set(SERVED) - set(CLOUD_ONLY)


def not_made_locally(evaluation: Evaluation, resource: Resource) -> str | None:
    """Why the resource is not made on the emulation, or None when it is."""
    if resource.type in CLOUD_ONLY:
        return CLOUD_ONLY[resource.type].reason
    served = SERVED.get(resource.type)
    if served is None:
        # Provisioning goes on (a test fails on this, tests/worker/dev/test_template_types.py).
        log.warning(
            "%s has type %s, which worker/dev/resources/ neither serves nor lists as "
            "cloud-only: left out of the dev stack",
            resource.logical_id,
            resource.type,
        )
        return f"{resource.type} is not listed"
    if served.cloud_only_when is None:
        return None

    def prop(name: str) -> Any:
        where = f"{resource.logical_id}.Properties.{name}"
        return evaluation.resolve(resource.properties.get(name), where)

    return served.cloud_only_when(prop)


def stand_in(evaluation: Evaluation, resource: Resource) -> Made | None:
    """A placeholder for a resource not made locally; None for one that must be made first."""
    if not_made_locally(evaluation, resource) is None:
        return None
    return placeholder(resource, evaluation.pseudo)


def physical_name(evaluation: Evaluation, resource: Resource) -> str:
    """The name a served, named resource gets in this stack."""
    served = SERVED.get(resource.type)
    if served is None or served.name_property is None:
        raise TypeError(f"{resource.logical_id}: a {resource.type} has no name of its own")
    return named(evaluation, resource, served.name_property)


def make_served(evaluation: Evaluation, services: Services) -> dict[str, Made]:
    """Every resource the emulation serves and the conditions include, each after those it
    needs, its properties resolved against what was made before it."""
    resources = evaluation.template.resources
    local = [
        logical_id
        for logical_id, resource in resources.items()
        if not_made_locally(evaluation, resource) is None and evaluation.included(resource)
    ]
    for logical_id in evaluation.order(local):
        resource = resources[logical_id]
        props = evaluation.resolve(dict(resource.properties), f"{logical_id}.Properties")
        evaluation.made[logical_id] = SERVED[resource.type].make(
            services, evaluation, resource, props
        )
    return {logical_id: evaluation.made[logical_id] for logical_id in local}
