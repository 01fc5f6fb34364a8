"""The fault proxy: botocore sees each fault as the service's own error; lost answers applied."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError

from mediamill_testkit.faultproxy import (
    Call,
    Fault,
    FaultDecider,
    FaultKind,
    FaultPlan,
    FaultProxy,
    Protocol,
    identify,
)
from mediamill_testkit.faultproxy.wire import error_for, render
from worker.dev.devstack import Stack

NO_RETRIES = Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"})
STANDARD = Config(
    retries={"mode": "standard", "total_max_attempts": 3}, s3={"addressing_style": "path"}
)


@pytest.fixture
def proxy(aws_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(aws_endpoint) as running:
        yield running


def client(service: str, endpoint: str, config: Config = NO_RETRIES) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", config=config)


class Target:
    """One write per service, made through the proxy, and a look at whether it happened."""

    def __init__(self, stack: Stack, proxy: FaultProxy, direct: Callable[[str], Any]) -> None:
        self.stack = stack
        self.proxy = proxy
        self.direct = direct
        sqs = direct("sqs")
        self.queue = sqs.create_queue(QueueName=f"{stack.names.prefix}-proxied")["QueueUrl"]
        self.heard = sqs.create_queue(QueueName=f"{stack.names.prefix}-heard")["QueueUrl"]
        heard_arn = sqs.get_queue_attributes(QueueUrl=self.heard, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        direct("sns").subscribe(
            TopicArn=stack.media_topic_arn,
            Protocol="sqs",
            Endpoint=heard_arn,
            Attributes={"RawMessageDelivery": "true"},
        )

    def write(self, service: str, config: Config = NO_RETRIES) -> Any:
        through = client(service, self.proxy.endpoint, config)
        if service == "s3":
            return through.put_object(
                Bucket=self.stack.names.renditions_bucket, Key="probe", Body=b"renditions"
            )
        if service == "sqs":
            return through.send_message(QueueUrl=self.queue, MessageBody="job")
        if service == "dynamodb":
            return through.put_item(
                TableName=self.stack.names.table,
                Item={"media_id": {"S": "probe"}, "status": {"S": "READY"}},
                ConditionExpression="attribute_not_exists(media_id)",
            )
        return through.publish(TopicArn=self.stack.media_topic_arn, Message='{"probe": 1}')

    def applied(self, service: str) -> bool:
        if service == "s3":
            listed = self.direct("s3").list_objects_v2(Bucket=self.stack.names.renditions_bucket)
            return listed.get("KeyCount", 0) == 1
        if service == "dynamodb":
            got = self.direct("dynamodb").get_item(
                TableName=self.stack.names.table, Key={"media_id": {"S": "probe"}}
            )
            return "Item" in got
        url = self.queue if service == "sqs" else self.heard
        got = self.direct("sqs").receive_message(QueueUrl=url, WaitTimeSeconds=0)
        return len(got.get("Messages", [])) == 1


@pytest.fixture
def target(stack: Stack, proxy: FaultProxy, aws_endpoint: str) -> Target:
    return Target(stack, proxy, lambda service: client(service, aws_endpoint))


# (service, kind) -> (HTTP status, error code botocore reports)
REFUSED = {
    ("s3", FaultKind.THROTTLE): (503, "SlowDown"),
    ("s3", FaultKind.SERVER_ERROR): (500, "InternalError"),
    ("sqs", FaultKind.THROTTLE): (400, "RequestThrottled"),
    ("sqs", FaultKind.SERVER_ERROR): (500, "InternalError"),
    ("dynamodb", FaultKind.THROTTLE): (400, "ProvisionedThroughputExceededException"),
    ("dynamodb", FaultKind.SERVER_ERROR): (500, "InternalServerError"),
    ("sns", FaultKind.THROTTLE): (429, "Throttled"),
    ("sns", FaultKind.SERVER_ERROR): (500, "InternalError"),
}


@pytest.mark.parametrize(("service", "kind"), list(REFUSED), ids=lambda v: str(v))
def test_a_refused_call_is_the_services_own_error_and_not_applied(
    target: Target, proxy: FaultProxy, service: str, kind: FaultKind
) -> None:
    proxy.script(service, kind)
    with pytest.raises(ClientError) as caught:
        target.write(service)
    status, code = REFUSED[(service, kind)]
    error = caught.value.response["Error"]
    assert error["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    if service == "sqs":
        # SQS speaks JSON but keeps its query-protocol codes: both the body's __type and the
        # x-amzn-query-error header name the error, as the service sends them.
        assert error["QueryErrorCode"] == code
        assert error["Type"] == ("Sender" if kind is FaultKind.THROTTLE else "Receiver")
    assert not target.applied(service)
    assert proxy.faults(service, kind) == 1


def test_dynamodb_throttling_comes_in_both_of_its_forms(aws_endpoint: str, stack: Stack) -> None:
    plan = FaultPlan(rate=1.0, seed=3, kinds={FaultKind.THROTTLE: 1.0})
    seen = set()
    with FaultProxy(aws_endpoint, plan) as always:
        ddb = client("dynamodb", always.endpoint)
        for _ in range(12):
            with pytest.raises(ClientError) as caught:
                ddb.get_item(TableName=stack.names.table, Key={"media_id": {"S": "x"}})
            seen.add(caught.value.response["Error"]["Code"])
    assert seen == {"ProvisionedThroughputExceededException", "ThrottlingException"}


@pytest.mark.parametrize("service", ["s3", "sqs", "dynamodb", "sns"])
def test_a_lost_answer_is_a_server_error_but_the_write_was_applied(
    target: Target, proxy: FaultProxy, service: str
) -> None:
    proxy.script(service, FaultKind.LOST_ANSWER)
    with pytest.raises(ClientError) as caught:
        target.write(service)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert target.applied(service)


@pytest.mark.parametrize("service", ["s3", "sqs", "dynamodb", "sns"])
def test_a_dropped_connection_after_the_write_leaves_it_applied(
    target: Target, proxy: FaultProxy, service: str
) -> None:
    proxy.script(service, FaultKind.DROPPED)
    with pytest.raises(ConnectionClosedError):
        target.write(service)
    assert target.applied(service)


def test_botocore_retries_a_conditional_write_into_its_own_condition(
    target: Target, proxy: FaultProxy
) -> None:
    """The production failure the proxy exists to reproduce: the retry meets its own write."""
    proxy.script("dynamodb", FaultKind.LOST_ANSWER, operation="PutItem")
    with pytest.raises(ClientError) as caught:
        target.write("dynamodb", STANDARD)
    assert caught.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert caught.value.response["ResponseMetadata"]["RetryAttempts"] == 1
    assert target.applied("dynamodb")


@pytest.mark.parametrize("service", ["s3", "sqs", "dynamodb"])
def test_botocore_retries_the_throttling_it_knows(
    target: Target, proxy: FaultProxy, service: str
) -> None:
    proxy.script(service, FaultKind.THROTTLE)
    answer = target.write(service, STANDARD)
    assert answer["ResponseMetadata"]["RetryAttempts"] == 1
    assert target.applied(service)


def test_botocore_does_not_retry_sns_throttled(target: Target, proxy: FaultProxy) -> None:
    """Why the worker must retry SNS's Throttled (429) itself: standard mode does not."""
    proxy.script("sns", FaultKind.THROTTLE)
    with pytest.raises(ClientError) as caught:
        target.write("sns", STANDARD)
    assert caught.value.response["Error"]["Code"] == "Throttled"
    assert caught.value.response["ResponseMetadata"]["RetryAttempts"] == 0


async def test_the_workers_http_stack_retries_a_dropped_connection(
    target: Target, proxy: FaultProxy, stack: Stack
) -> None:
    """aiobotocore (aiohttp underneath, as in the worker) takes a drop as retryable."""
    proxy.script("sqs", FaultKind.DROPPED, operation="SendMessage")
    session = get_session()
    async with session.create_client(
        "sqs", endpoint_url=proxy.endpoint, region_name="us-east-1", config=STANDARD
    ) as sqs:
        answer = await sqs.send_message(QueueUrl=target.queue, MessageBody="job")
    assert answer["ResponseMetadata"]["RetryAttempts"] == 1
    got = client("sqs", proxy.upstream).receive_message(
        QueueUrl=target.queue, MaxNumberOfMessages=10, WaitTimeSeconds=0
    )
    assert [m["Body"] for m in got["Messages"]] == ["job", "job"]  # applied, then sent again


def test_identifies_real_requests_of_each_service(proxy: FaultProxy, stack: Stack) -> None:
    seen: list[Call] = []

    def capture(request: Any, **_: Any) -> None:
        headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        body = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
        seen.append(identify(request.method, headers, {}, body))

    calls = {
        "s3": lambda c: c.list_objects_v2(Bucket=stack.names.originals_bucket),
        "sqs": lambda c: c.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["All"]),
        "dynamodb": lambda c: c.describe_table(TableName=stack.names.table),
        "sns": lambda c: c.get_topic_attributes(TopicArn=stack.media_topic_arn),
    }
    for service, call in calls.items():
        through = client(service, proxy.endpoint)
        through.meta.events.register("before-send", capture)
        call(through)
    assert seen == [
        Call("s3", "GET", Protocol.REST_XML),
        Call("sqs", "GetQueueAttributes", Protocol.JSON),
        Call("dynamodb", "DescribeTable", Protocol.JSON),
        Call("sns", "GetTopicAttributes", Protocol.QUERY),
    ]
    assert proxy.stats()["calls"] == {"dynamodb": 1, "s3": 1, "sns": 1, "sqs": 1}


def test_query_protocol_sqs_gets_its_fault_as_query_xml() -> None:
    """A client still speaking SQS's query protocol gets the XML error it parses."""
    call = identify(
        "POST",
        {
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "Authorization": "AWS4-HMAC-SHA256 Credential=k/20250101/us-east-1/sqs/aws4_request",
        },
        {},
        b"Action=ReceiveMessage&Version=2012-11-05",
    )
    assert call == Call("sqs", "ReceiveMessage", Protocol.QUERY)
    reply = render(call, error_for(call, FaultKind.THROTTLE))
    assert reply.status == 400
    assert b"<Code>RequestThrottled</Code>" in reply.body
    assert b"<Type>Sender</Type>" in reply.body


def test_decisions_are_seeded_per_service_whatever_the_interleaving() -> None:
    plan = FaultPlan(rate=0.3, seed=11)
    alone, mixed = FaultDecider(plan), FaultDecider(plan)
    s3 = Call("s3", "PUT", Protocol.REST_XML)
    other = Call("sqs", "ReceiveMessage", Protocol.JSON)
    first = [alone.decide(s3) for _ in range(400)]
    second = []
    for index in range(400):
        if index % 3 == 0:
            mixed.decide(other)
        second.append(mixed.decide(s3))
    assert first == second
    share = sum(d is not None for d in first) / len(first)
    assert 0.22 < share < 0.38
    assert {d.kind for d in first if d is not None} == set(FaultKind)
    assert [FaultDecider(FaultPlan(rate=0.3, seed=12)).decide(s3) for _ in range(400)] != first


def test_only_the_planned_services_are_faulted_and_scripts_come_first() -> None:
    decider = FaultDecider(FaultPlan(rate=1.0, seed=1, services=frozenset({"sqs"})))
    assert decider.decide(Call("sns", "Publish", Protocol.QUERY)) is None
    assert decider.decide(Call("sqs", "SendMessage", Protocol.JSON)) is not None
    decider.set_rate(0.0)
    assert decider.decide(Call("sqs", "SendMessage", Protocol.JSON)) is None
    decider.script("sns", FaultKind.DROPPED, "Publish", 1)
    assert decider.decide(Call("sns", "Subscribe", Protocol.QUERY)) is None
    fault = decider.decide(Call("sns", "Publish", Protocol.QUERY))
    assert fault is not None
    assert fault.kind is FaultKind.DROPPED
    assert decider.decide(Call("sns", "Publish", Protocol.QUERY)) is None
    update = Call("dynamodb", "UpdateItem", Protocol.JSON)
    decider.script("dynamodb", FaultKind.LOST_ANSWER, "UpdateItem", 1, match=b'"READY"')
    assert decider.decide(update, b'{"S": "PROCESSING"}') is None
    assert decider.decide(update, b'{":v0": {"S": "READY"}}') == Fault(FaultKind.LOST_ANSWER)
    assert decider.decide(update, b'{":v0": {"S": "READY"}}') is None


def test_a_slowed_call_is_held_then_answered_as_usual(target: Target, proxy: FaultProxy) -> None:
    proxy.slow("sqs", 0.5, operation="SendMessage")
    started = time.monotonic()
    sent = target.write("sqs")
    assert time.monotonic() - started >= 0.5
    assert sent["MessageId"]
    assert target.applied("sqs")
    started = time.monotonic()
    target.write("sqs")  # the next one goes straight on
    assert time.monotonic() - started < 0.5
    assert proxy.stats()["total_faults"] == 0  # slow is not a fault


def test_a_late_answer_comes_after_the_call_was_applied(target: Target, proxy: FaultProxy) -> None:
    proxy.slow("sqs", 1.0, operation="SendMessage", answer=True)
    with ThreadPoolExecutor(1) as pool:
        sent = pool.submit(target.write, "sqs")
        time.sleep(0.5)
        assert not sent.done()
        assert target.applied("sqs")  # done already, while its caller still waits
        assert sent.result(timeout=5)["MessageId"]


def test_counters_by_service_kind_and_operation(target: Target, proxy: FaultProxy) -> None:
    proxy.script("sqs", FaultKind.THROTTLE)
    proxy.script("sqs", FaultKind.LOST_ANSWER)
    for _ in range(2):
        with pytest.raises(ClientError):
            target.write("sqs")
    target.write("sqs")
    stats = proxy.stats()
    assert stats["calls"]["sqs"] == 3
    assert stats["faults"] == {"sqs": {"lost_answer": 1, "throttle": 1}}
    assert stats["faults_by_operation"]["sqs"] == {
        "SendMessage:lost_answer": 1,
        "SendMessage:throttle": 1,
    }
    assert stats["total_faults"] == 2
    assert json.loads(json.dumps(stats)) == stats
