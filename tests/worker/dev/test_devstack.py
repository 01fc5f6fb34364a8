"""The provisioned stack is what deploy/ecs/template.yaml declares, read back from the emulation."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import unquote_plus

from mediamill_core.items import OWED_INDEX, OWED_PROJECTION, OWNER_INDEX
from mediamill_core.keys import ORIGINALS_PREFIX
from worker.dev.devstack import Stack
from worker.dev.resources import SERVED, not_made_locally


def template_properties(stack: Stack, logical_id: str) -> dict[str, Any]:
    """The resource's properties as the template gives them for this stack."""
    evaluation = stack.names.evaluation(stack.parameters)
    evaluation.made.update(stack.resources)
    resource = evaluation.template.resources[logical_id]
    return dict(evaluation.resolve(dict(resource.properties), logical_id))


def test_every_served_resource_of_the_template_is_made(stack: Stack) -> None:
    evaluation = stack.names.evaluation(stack.parameters)
    served = {
        logical_id: resource
        for logical_id, resource in evaluation.template.resources.items()
        if resource.type in SERVED and evaluation.included(resource)
    }
    # Only a resource its properties make cloud-only (an e-mail subscription) is left out.
    left_out = {
        logical_id: not_made_locally(evaluation, resource)
        for logical_id, resource in served.items()
        if logical_id not in stack.resources
    }
    assert all(left_out.values()), left_out
    assert {"OriginalsBucket", "MediaQueue", "UploadsSubscription", "MediaTable"} <= set(
        stack.resources
    )


def test_names_come_from_the_template_for_the_stack_name(stack: Stack) -> None:
    prefix, account = stack.names.prefix, stack.names.account_id
    assert stack.names.originals_bucket == f"{prefix}-originals-{account}"
    assert stack.names.renditions_bucket == f"{prefix}-renditions-{account}"
    assert stack.names.media_topic == f"{prefix}-media-events"
    # What was made answers to the same names.
    assert stack.resources["OriginalsBucket"].ref == stack.names.originals_bucket
    assert stack.resources["RenditionsBucket"].ref == stack.names.renditions_bucket
    assert stack.resources["MediaTable"].ref == stack.names.table
    assert stack.queue_url.endswith(f"/{stack.names.queue}")
    assert stack.dlq_url.endswith(f"/{stack.names.dlq}")
    assert stack.names.backfill_queue == f"{prefix}-backfill-jobs"
    assert stack.names.backfill_dlq == f"{prefix}-backfill-jobs-dlq"
    assert stack.backfill_queue_url.endswith(f"/{stack.names.backfill_queue}")
    assert stack.backfill_dlq_url.endswith(f"/{stack.names.backfill_dlq}")
    assert stack.uploads_topic_arn.endswith(f":{stack.names.uploads_topic}")
    assert stack.media_topic_arn.endswith(f":{stack.names.media_topic}")


def test_queues_have_the_templates_attributes_and_redrive(stack: Stack, sqs: Any) -> None:
    for logical_id, url in (
        ("MediaQueue", stack.queue_url),
        ("MediaDeadLetterQueue", stack.dlq_url),
        ("BackfillQueue", stack.backfill_queue_url),
        ("BackfillDeadLetterQueue", stack.backfill_dlq_url),
    ):
        expected = template_properties(stack, logical_id)
        live = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        for name, value in expected.items():
            if name == "QueueName":
                continue
            if name == "RedrivePolicy":
                redrive = json.loads(live[name])
                assert redrive["deadLetterTargetArn"] == value["deadLetterTargetArn"]
                assert int(redrive["maxReceiveCount"]) == int(value["maxReceiveCount"])
            else:
                want = str(value).lower() if isinstance(value, bool) else str(value)
                assert live[name] == want, name
    attributes = sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["All"])
    redrive = json.loads(attributes["Attributes"]["RedrivePolicy"])
    dlq_arn = sqs.get_queue_attributes(QueueUrl=stack.dlq_url, AttributeNames=["QueueArn"])
    assert redrive["deadLetterTargetArn"] == dlq_arn["Attributes"]["QueueArn"]
    # The `stack` fixture's parameters reached the queue.
    assert int(redrive["maxReceiveCount"]) == stack.max_receive_count == 3
    assert attributes["Attributes"]["VisibilityTimeout"] == "30"
    assert attributes["Attributes"]["SqsManagedSseEnabled"] == "true"
    # The backfill lane has its own DLQ, and the same parameters.
    backfill = sqs.get_queue_attributes(QueueUrl=stack.backfill_queue_url, AttributeNames=["All"])
    redrive = json.loads(backfill["Attributes"]["RedrivePolicy"])
    dlq_arn = sqs.get_queue_attributes(QueueUrl=stack.backfill_dlq_url, AttributeNames=["QueueArn"])
    assert redrive["deadLetterTargetArn"] == dlq_arn["Attributes"]["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == 3
    assert backfill["Attributes"]["VisibilityTimeout"] == "30"


def test_the_worker_is_pointed_at_both_lanes(stack: Stack) -> None:
    env = stack.settings_env()
    assert env["MEDIAMILL_QUEUE_URL"] == stack.queue_url
    assert env["MEDIAMILL_BACKFILL_QUEUE_URL"] == stack.backfill_queue_url
    described = stack.describe()
    assert described["backfill_queue_url"] == stack.backfill_queue_url
    assert described["backfill_dlq_url"] == stack.backfill_dlq_url


def test_the_queue_policy_lets_the_uploads_topic_deliver(stack: Stack, sqs: Any) -> None:
    live = sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["Policy"])
    [statement] = json.loads(live["Attributes"]["Policy"])["Statement"]
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == stack.queue_arn
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": stack.uploads_topic_arn}}


def test_the_topic_policy_lets_the_originals_bucket_publish(stack: Stack, sns: Any) -> None:
    live = sns.get_topic_attributes(TopicArn=stack.uploads_topic_arn)["Attributes"]
    [statement] = json.loads(live["Policy"])["Statement"]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Resource"] == stack.uploads_topic_arn
    assert statement["Condition"]["ArnLike"] == {
        "aws:SourceArn": f"arn:aws:s3:::{stack.names.originals_bucket}"
    }
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}


def test_the_subscription_is_the_templates(stack: Stack, sns: Any) -> None:
    listed = sns.list_subscriptions_by_topic(TopicArn=stack.uploads_topic_arn)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in listed] == [("sqs", stack.queue_arn)]


def test_originals_notify_the_uploads_topic_for_the_originals_prefix(stack: Stack, s3: Any) -> None:
    live = s3.get_bucket_notification_configuration(Bucket=stack.names.originals_bucket)
    [topic] = live["TopicConfigurations"]
    assert topic["TopicArn"] == stack.uploads_topic_arn
    assert topic["Events"] == ["s3:ObjectCreated:*"]
    # The prefix under which the API puts originals and the worker reads them.
    rules = [{"Name": "prefix", "Value": ORIGINALS_PREFIX}]
    assert topic["Filter"] == {"Key": {"FilterRules": rules}}
    assert "TopicConfigurations" not in s3.get_bucket_notification_configuration(
        Bucket=stack.names.renditions_bucket
    )


def _uploads_on_the_queue(sqs: Any, url: str, wait: float) -> list[str]:
    keys: list[str] = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in got.get("Messages", []):
            body = json.loads(json.loads(message["Body"])["Message"])
            # Keys come URL-encoded (moto encodes "/" too, which S3 does not).
            keys += [unquote_plus(r["s3"]["object"]["key"]) for r in body.get("Records", [])]
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return keys


def test_an_original_reaches_the_queue_through_the_topic_and_others_do_not(
    stack: Stack, s3: Any, sqs: Any
) -> None:
    s3.put_object(Bucket=stack.names.originals_bucket, Key="elsewhere/x", Body=b"x")
    s3.put_object(Bucket=stack.names.originals_bucket, Key="originals/abc", Body=b"x")
    assert _uploads_on_the_queue(sqs, stack.queue_url, wait=2) == ["originals/abc"]


def test_buckets_block_public_access_and_encrypt(stack: Stack, s3: Any) -> None:
    for bucket in (stack.names.originals_bucket, stack.names.renditions_bucket):
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert block == {
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        }
        [rule] = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
            "Rules"
        ]
        assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}


def test_originals_bucket_lets_a_browser_upload_and_read_part_etags(stack: Stack, s3: Any) -> None:
    [rule] = s3.get_bucket_cors(Bucket=stack.names.originals_bucket)["CORSRules"]
    assert set(rule["AllowedMethods"]) == {"POST", "PUT"}
    assert rule["ExposeHeaders"] == ["ETag"]
    assert rule["AllowedOrigins"] == ["*"]
    assert rule["MaxAgeSeconds"] == 3600


def test_abandoned_multipart_uploads_are_aborted_after_a_day(stack: Stack, s3: Any) -> None:
    rules = s3.get_bucket_lifecycle_configuration(Bucket=stack.names.originals_bucket)["Rules"]
    [rule] = [r for r in rules if "AbortIncompleteMultipartUpload" in r]
    assert rule["ID"] == "abort-abandoned-multipart-uploads"
    assert rule["Status"] == "Enabled"
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}


def test_the_table_has_the_templates_keys_and_indexes(stack: Stack, dynamodb: Any) -> None:
    expected = template_properties(stack, "MediaTable")
    table = dynamodb.describe_table(TableName=stack.names.table)["Table"]
    assert table["KeySchema"] == expected["KeySchema"]
    assert sorted(table["AttributeDefinitions"], key=str) == sorted(
        expected["AttributeDefinitions"], key=str
    )
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    indexes = {i["IndexName"]: i for i in table["GlobalSecondaryIndexes"]}
    for index in expected["GlobalSecondaryIndexes"]:
        assert indexes[index["IndexName"]]["KeySchema"] == index["KeySchema"]
        assert indexes[index["IndexName"]]["Projection"] == index["Projection"]
    # The indexes the API and the worker query, with what the sweep reads from the sparse one.
    assert set(indexes) == {OWNER_INDEX, OWED_INDEX}
    assert set(OWED_PROJECTION) <= set(indexes[OWED_INDEX]["Projection"]["NonKeyAttributes"])
    assert table["SSEDescription"]["Status"] == "ENABLED"


def test_abandoned_uploads_expire_on_the_tables_ttl(stack: Stack, dynamodb: Any) -> None:
    ttl = dynamodb.describe_time_to_live(TableName=stack.names.table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "upload_expires_at"}


def test_the_table_can_be_recovered_to_a_point_in_time(stack: Stack, dynamodb: Any) -> None:
    backups = dynamodb.describe_continuous_backups(TableName=stack.names.table)
    recovery = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert recovery["PointInTimeRecoveryStatus"] == "ENABLED"
