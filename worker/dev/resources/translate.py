"""What every served type's translation shares: the clients, the checks, the value conversions."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from worker.dev.evaluation import Evaluation, Made
from worker.dev.template import Resource, TemplateError

Props = dict[str, Any]


class UntranslatedProperty(TemplateError):
    """A served resource has a property the dev stack neither translates nor knows to leave out."""


@dataclass(frozen=True, slots=True)
class Services:
    """boto3 clients on the emulation, one per service the served types need."""

    s3: Any
    sns: Any
    sqs: Any
    dynamodb: Any


Make = Callable[[Services, Evaluation, Resource, Props], Made]


def refuse_untranslated(resource: Resource, props: Props, known: Iterable[str]) -> None:
    """Stop on a property the translation would otherwise drop without a word."""
    refuse_unknown(props, known, f"{resource.logical_id} ({resource.type})")


def refuse_unknown(value: Mapping[str, Any], known: Iterable[str], where: str) -> None:
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise UntranslatedProperty(
            f"{where}: the dev stack does not translate {', '.join(unknown)}; teach "
            "worker/dev/resources/ to, or write down why it has no local effect"
        )


def renamed(value: Mapping[str, Any], names: Mapping[str, str], where: str) -> Props:
    """One structure with CloudFormation's keys renamed to the API's; unknown keys refused."""
    refuse_unknown(value, names, where)
    return {names[key]: item for key, item in value.items()}


def named(evaluation: Evaluation, resource: Resource, prop: str) -> str:
    """The resource's name: its name property, or, when the template gives none, one made from
    the stack and the logical id as CloudFormation makes one."""
    if prop in resource.properties:
        where = f"{resource.logical_id}.Properties.{prop}"
        return str(evaluation.resolve(resource.properties[prop], where))
    name = f"{evaluation.pseudo.stack_name}-{resource.logical_id}"
    if resource.type == "AWS::S3::Bucket":
        return name.lower()
    fifo = resource.properties.get("FifoQueue", resource.properties.get("FifoTopic"))
    return f"{name}.fifo" if flag(evaluation.resolve(fifo, resource.logical_id)) else name


def flag(value: Any) -> bool:
    """A CloudFormation Boolean, which may arrive as true or as "true"."""
    return value is True or str(value).lower() == "true"


def attribute(value: Any) -> str:
    """A property as an SQS or SNS attribute: JSON documents as JSON, flags as true/false."""
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def tags(value: list[Props]) -> list[dict[str, str]]:
    return [{"Key": str(tag["Key"]), "Value": str(tag["Value"])} for tag in value]
