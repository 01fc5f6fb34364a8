"""Which resource types the dev stack makes, which it leaves to the cloud, and how it makes them."""

from __future__ import annotations

import json
import logging
import secrets
import textwrap
from typing import Any

import pytest
from botocore.exceptions import ClientError

from worker.dev.evaluation import Evaluation, Made, Pseudo
from worker.dev.resources import (
    CLOUD_ONLY,
    SERVED,
    Services,
    UntranslatedProperty,
    make_served,
    physical_name,
    stand_in,
    unlisted_types,
)
from worker.dev.template import Template, load_template


def test_every_type_in_the_template_is_served_or_listed_as_cloud_only() -> None:
    # A new type in deploy/ecs/template.yaml needs a decision: made locally, or why not.
    assert unlisted_types(load_template()) == set()


def test_no_type_is_both_and_each_cloud_only_type_says_why() -> None:
    assert set(SERVED).isdisjoint(CLOUD_ONLY)
    for kind, entry in CLOUD_ONLY.items():
        assert entry.reason.strip(), kind
        assert "\n" not in entry.reason, kind


def test_a_type_in_neither_list_is_found() -> None:
    template = Template.parse(
        "Resources:\n  Q: {Type: AWS::SQS::Queue}\n  R: {Type: AWS::Route53::RecordSet}\n"
    )
    assert unlisted_types(template) == {"AWS::Route53::RecordSet"}


@pytest.fixture
def services(s3: Any, sns: Any, sqs: Any, dynamodb: Any) -> Services:
    return Services(s3=s3, sns=sns, sqs=sqs, dynamodb=dynamodb)


def provision(services: Services, body: str, **parameters: Any) -> dict[str, Made]:
    template = Template.parse(textwrap.dedent(body), source="test.yaml")
    pseudo = Pseudo(f"tt-{secrets.token_hex(4)}", "123456789012", "us-east-1")
    return make_served(Evaluation(template, pseudo, parameters, stand_in=stand_in), services)


def test_a_type_in_neither_list_is_left_out_with_a_warning(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        made = provision(
            services,
            """
            Resources:
              Record: {Type: AWS::Route53::RecordSet, Properties: {Name: x}}
              Queue:
                Type: AWS::SQS::Queue
                Properties: {Tags: [{Key: record, Value: !Ref Record}]}
            """,
        )
    assert set(made) == {"Queue"}
    assert "Record has type AWS::Route53::RecordSet, which" in caplog.text


SUBSCRIPTIONS = """
Parameters:
  AlarmEmail: {Type: String}
Resources:
  Topic: {Type: AWS::SNS::Topic}
  Queue: {Type: AWS::SQS::Queue}
  ByEmail:
    Type: AWS::SNS::Subscription
    Properties: {TopicArn: !Ref Topic, Protocol: email, Endpoint: !Ref AlarmEmail}
  ToQueue:
    Type: AWS::SNS::Subscription
    Properties:
      TopicArn: !Ref Topic
      Protocol: sqs
      Endpoint: !GetAtt Queue.Arn
      RawMessageDelivery: true
      FilterPolicy: {kind: [video]}
"""


def test_only_queue_subscriptions_are_made_locally(services: Services, sns: Any) -> None:
    # The email one is cloud-only by its protocol: its endpoint (a parameter with no value
    # here) is never even resolved.
    made = provision(services, SUBSCRIPTIONS)
    assert set(made) == {"Topic", "Queue", "ToQueue"}
    [listed] = sns.list_subscriptions_by_topic(TopicArn=made["Topic"].ref)["Subscriptions"]
    assert listed["Endpoint"] == made["Queue"].attributes["Arn"]
    attributes = sns.get_subscription_attributes(SubscriptionArn=made["ToQueue"].ref)
    assert attributes["Attributes"]["RawMessageDelivery"] == "true"
    assert json.loads(attributes["Attributes"]["FilterPolicy"]) == {"kind": ["video"]}


POLICED_BUCKET = """
Resources:
  Cdn: {Type: AWS::CloudFront::Distribution}
  Bucket: {Type: AWS::S3::Bucket}
  Policy:
    Type: AWS::S3::BucketPolicy
    Properties:
      Bucket: !Ref Bucket
      PolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Sid: TlsOnly
            Effect: Deny
            Principal: "*"
            Action: "s3:*"
            Resource: [!GetAtt Bucket.Arn, !Sub "${Bucket.Arn}/*"]
            Condition: {Bool: {aws:SecureTransport: false}}
          - Sid: CloudFrontReads
            Effect: Allow
            Principal: {Service: cloudfront.amazonaws.com}
            Action: s3:GetObject
            Resource: !Sub "${Bucket.Arn}/*"
            Condition:
              StringEquals:
                AWS:SourceArn: !Sub "arn:aws:cloudfront::${AWS::AccountId}:distribution/${Cdn}"
          - Sid: NoDeletes
            Effect: Deny
            Principal: "*"
            Action: s3:DeleteBucket
            Resource: !GetAtt Bucket.Arn
"""


def test_bucket_policy_statements_with_conditions_are_left_out(services: Services, s3: Any) -> None:
    made = provision(services, POLICED_BUCKET)
    bucket = made["Bucket"].ref
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["NoDeletes"]
    # moto would refuse both of these with the conditional statements in place.
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def test_a_property_the_dev_stack_does_not_translate_stops_it(services: Services) -> None:
    with pytest.raises(UntranslatedProperty, match=r"B \(AWS::S3::Bucket\): .* WebsiteConfig"):
        provision(
            services,
            "Resources:\n  B: {Type: AWS::S3::Bucket, Properties: "
            "{WebsiteConfiguration: {IndexDocument: index.html}}}\n",
        )
    with pytest.raises(UntranslatedProperty, match=r"CorsConfiguration: .* translate Shiny"):
        provision(
            services,
            "Resources:\n  B: {Type: AWS::S3::Bucket, Properties: "
            "{CorsConfiguration: {CorsRules: [{AllowedMethods: [GET], "
            "AllowedOrigins: ['*'], Shiny: 1}]}}}\n",
        )


def test_lifecycle_rules_are_translated_to_the_apis_filters(services: Services, s3: Any) -> None:
    # Counts and flags from parameters arrive as text; the APIs want numbers and booleans.
    made = provision(
        services,
        """
        Parameters:
          Days: {Type: Number, Default: 30}
          Block: {Type: String, Default: "true"}
        Resources:
          Bucket:
            Type: AWS::S3::Bucket
            Properties:
              VersioningConfiguration: {Status: Enabled}
              PublicAccessBlockConfiguration: {BlockPublicAcls: !Ref Block}
              LifecycleConfiguration:
                Rules:
                  - {Id: all, Status: Enabled, ExpirationInDays: !Ref Days}
                  - Id: tmp
                    Status: Enabled
                    Prefix: tmp/
                    TagFilters: [{Key: kind, Value: scratch}]
                    Transitions: [{StorageClass: GLACIER, TransitionInDays: 7}]
                    NoncurrentVersionExpirationInDays: 3
    """,
    )
    bucket = made["Bucket"].ref
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert rules["all"]["Filter"] == {"Prefix": ""}
    assert rules["all"]["Expiration"] == {"Days": 30}
    tmp = rules["tmp"]
    assert tmp["Filter"]["And"]["Prefix"] == "tmp/"
    assert tmp["Filter"]["And"]["Tags"] == [{"Key": "kind", "Value": "scratch"}]
    assert tmp["Transitions"] == [{"Days": 7, "StorageClass": "GLACIER"}]
    assert tmp["NoncurrentVersionExpiration"]["NoncurrentDays"] == 3
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block["BlockPublicAcls"] is True


def test_a_table_with_provisioned_throughput_and_a_stream(
    services: Services, dynamodb: Any
) -> None:
    made = provision(
        services,
        """
        Parameters:
          Units: {Type: Number, Default: 3}
          Protect: {Type: String, Default: "false"}
        Resources:
          Table:
            Type: AWS::DynamoDB::Table
            Properties:
              AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
              KeySchema: [{AttributeName: id, KeyType: HASH}]
              ProvisionedThroughput: {ReadCapacityUnits: !Ref Units, WriteCapacityUnits: 2}
              StreamSpecification: {StreamViewType: NEW_IMAGE}
              DeletionProtectionEnabled: !Ref Protect
          Consumer:
            Type: AWS::SQS::Queue
            Properties: {Tags: [{Key: stream, Value: !GetAtt Table.StreamArn}]}
    """,
    )
    table = dynamodb.describe_table(TableName=made["Table"].ref)["Table"]
    assert table["ProvisionedThroughput"]["ReadCapacityUnits"] == 3
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    assert made["Table"].attributes["StreamArn"] == table["LatestStreamArn"]
    assert table["DeletionProtectionEnabled"] is False


def test_a_resource_its_condition_leaves_out_is_not_made(services: Services, sqs: Any) -> None:
    body = """
        Parameters:
          WithDlq: {Type: String, Default: "no", AllowedValues: ["yes", "no"]}
        Conditions:
          HasDlq: !Equals [!Ref WithDlq, "yes"]
        Resources:
          Dlq: {Type: AWS::SQS::Queue, Condition: HasDlq}
          Queue:
            Type: AWS::SQS::Queue
            Properties:
              RedrivePolicy: !If
                - HasDlq
                - {deadLetterTargetArn: !GetAtt Dlq.Arn, maxReceiveCount: 4}
                - !Ref AWS::NoValue
    """
    without = provision(services, body)
    assert set(without) == {"Queue"}
    with_dlq = provision(services, body, WithDlq="yes")
    live = sqs.get_queue_attributes(QueueUrl=with_dlq["Queue"].ref, AttributeNames=["All"])
    redrive = json.loads(live["Attributes"]["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == with_dlq["Dlq"].attributes["Arn"]
    with pytest.raises(ClientError):  # really not made: no such queue
        sqs.get_queue_url(
            QueueName=without["Queue"].attributes["QueueName"].replace("Queue", "Dlq")
        )


def test_a_resource_the_template_does_not_name_gets_a_name_from_stack_and_logical_id() -> None:
    template = Template.parse(
        textwrap.dedent("""
            Parameters:
              Fifo: {Type: String, Default: "true"}
            Resources:
              Jobs: {Type: AWS::SQS::Queue, Properties: {FifoQueue: !Ref Fifo}}
              Media: {Type: AWS::S3::Bucket}
              Named: {Type: AWS::SNS::Topic, Properties: {TopicName: !Sub "${AWS::StackName}-x"}}
        """)
    )
    evaluation = Evaluation(template, Pseudo("Demo", "1", "us-east-1"), stand_in=stand_in)
    names = {lid: physical_name(evaluation, r) for lid, r in template.resources.items()}
    # Bucket names must be lowercase; a FIFO queue's name must end in .fifo.
    assert names == {"Jobs": "Demo-Jobs.fifo", "Media": "demo-media", "Named": "Demo-x"}
