"""The template's resource types that exist only in the cloud, each with why, and their stand-ins.

A served resource may still refer to one (a bucket policy naming the CloudFront distribution):
the reference resolves to a placeholder of the right shape, as the real resource would answer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import NamedTuple

from worker.dev.evaluation import Made, Pseudo
from worker.dev.template import Resource


class CloudOnly(NamedTuple):
    service: str  # as it is written in the resource's ARN
    reason: str


CLOUD_ONLY: dict[str, CloudOnly] = {
    "AWS::CloudFront::Distribution": CloudOnly(
        "cloudfront", "moto serves no content through it; locally the API presigns S3 GETs"
    ),
    "AWS::CloudFront::OriginAccessControl": CloudOnly(
        "cloudfront", "part of the distribution, which is cloud-only"
    ),
    "AWS::CloudFront::CachePolicy": CloudOnly("cloudfront", "part of the distribution"),
    "AWS::CloudFront::ResponseHeadersPolicy": CloudOnly("cloudfront", "part of the distribution"),
    "AWS::ApiGatewayV2::Api": CloudOnly(
        "apigateway", "worker/dev/local_api.py stands in for the HTTP API on loopback"
    ),
    "AWS::ApiGatewayV2::Stage": CloudOnly("apigateway", "part of the HTTP API"),
    "AWS::ApiGatewayV2::Route": CloudOnly("apigateway", "the local API routes every path"),
    "AWS::ApiGatewayV2::Integration": CloudOnly("apigateway", "the local API calls the handler"),
    "AWS::ApiGatewayV2::Authorizer": CloudOnly(
        "apigateway", "the local API reads tokens without verifying them (loopback only)"
    ),
    "AWS::Lambda::Function": CloudOnly(
        "lambda", "the local API runs the same handler in-process; moto would need Docker"
    ),
    "AWS::Lambda::Permission": CloudOnly("lambda", "grants API Gateway, which is cloud-only"),
    "AWS::ECS::Cluster": CloudOnly("ecs", "`mediamill dev` runs the worker as a local process"),
    "AWS::ECS::TaskDefinition": CloudOnly("ecs", "the local worker takes its settings directly"),
    "AWS::ECS::Service": CloudOnly("ecs", "one local worker, started by `mediamill dev`"),
    "AWS::ECS::ClusterCapacityProviderAssociations": CloudOnly(
        "ecs", "Fargate and Fargate Spot capacity exist in the cloud only"
    ),
    "AWS::ApplicationAutoScaling::ScalableTarget": CloudOnly(
        "application-autoscaling", "nothing scales locally: the local fleet is one worker"
    ),
    "AWS::ApplicationAutoScaling::ScalingPolicy": CloudOnly(
        "application-autoscaling", "nothing scales locally"
    ),
    "AWS::CloudWatch::Alarm": CloudOnly(
        "cloudwatch", "moto stores alarms but never evaluates them against metrics"
    ),
    "AWS::CloudWatch::CompositeAlarm": CloudOnly("cloudwatch", "alarms are not evaluated locally"),
    "AWS::CloudWatch::Dashboard": CloudOnly("cloudwatch", "local metrics are read at /metrics"),
    "AWS::Logs::LogGroup": CloudOnly("logs", "local processes log to their own stderr"),
    "AWS::IAM::Role": CloudOnly("iam", "moto does not authorize its callers' requests"),
    "AWS::IAM::Policy": CloudOnly("iam", "moto does not authorize its callers' requests"),
    "AWS::IAM::ManagedPolicy": CloudOnly("iam", "moto does not authorize its callers' requests"),
    "AWS::IAM::RolePolicy": CloudOnly("iam", "moto does not authorize its callers' requests"),
    "AWS::EC2::SecurityGroup": CloudOnly("ec2", "no network boundary on loopback"),
    "AWS::EC2::SecurityGroupIngress": CloudOnly("ec2", "no network boundary on loopback"),
    "AWS::EC2::SecurityGroupEgress": CloudOnly("ec2", "no network boundary on loopback"),
    "AWS::APS::Workspace": CloudOnly(
        "aps", "Managed Prometheus is cloud-only; locally the worker's /metrics is scraped directly"
    ),
    "AWS::KMS::Key": CloudOnly(
        "kms", "the emulation encrypts nothing; keys are cited by placeholder ids"
    ),
    "AWS::KMS::Alias": CloudOnly("kms", "its key is cloud-only"),
}
_GLOBAL = {"cloudfront", "iam"}  # their ARNs carry no region


def placeholder(resource: Resource, pseudo: Pseudo) -> Made:
    """What a cloud-only resource answers to Ref and GetAtt locally: its would-be name, an ARN
    for any ...Arn attribute, and a name-like value for the rest (a domain name, an id)."""
    ident = f"{pseudo.stack_name}-{resource.logical_id}"
    entry = CLOUD_ONLY.get(resource.type)
    service = entry.service if entry else resource.type.split("::")[1].lower()
    kind = resource.type.split("::")[-1].lower()
    region = "" if service in _GLOBAL else pseudo.region
    arn = f"arn:{pseudo.partition}:{service}:{region}:{pseudo.account_id}:{kind}/{ident}"
    return Made(ref=ident, attributes=_Placeholders(arn, ident))


class _Placeholders(Mapping[str, str]):
    """Every attribute a cloud-only resource might be asked for, made up on demand."""

    def __init__(self, arn: str, ident: str) -> None:
        self._arn, self._ident = arn, ident

    def __getitem__(self, name: str) -> str:
        return self._arn if name.endswith("Arn") else f"{self._ident}-{name.lower()}"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0
