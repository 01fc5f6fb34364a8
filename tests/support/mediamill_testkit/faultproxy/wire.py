"""What a call is (service, operation, protocol) and its faults in that service's wire format.

The error bodies are the ones each service sends, in the protocol botocore speaks to it:
S3 REST-XML, SQS JSON 1.0 (query XML for a client that still speaks query), DynamoDB JSON 1.0
and SNS query XML. botocore parses each into the error code a production client sees.
"""

from __future__ import annotations

import enum
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs


class FaultKind(enum.StrEnum):
    """How a faulted call goes wrong; the first two never reach the emulated service."""

    THROTTLE = "throttle"  # refused as throttled, not applied
    SERVER_ERROR = "server_error"  # refused with a 5xx, not applied
    LOST_ANSWER = "lost_answer"  # applied, then answered with a 5xx instead of the result
    DROPPED = "dropped"  # applied, then the connection closes without an answer

    @property
    def applied(self) -> bool:
        """True when the emulated service has carried out the request before the fault."""
        return self in (FaultKind.LOST_ANSWER, FaultKind.DROPPED)


class Protocol(enum.StrEnum):
    REST_XML = "rest-xml"
    JSON = "json"
    QUERY = "query"


@dataclass(frozen=True, slots=True)
class Call:
    """One request as the proxy sees it: which service, which operation, in which protocol.

    ``operation`` is the X-Amz-Target operation (JSON), the ``Action`` (query) or, for S3's
    REST protocol, the HTTP method.
    """

    service: str
    operation: str
    protocol: Protocol
    json_version: str = "1.0"


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer the proxy makes itself."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


# SigV4: "AWS4-HMAC-SHA256 Credential=KEY/20250101/us-east-1/sqs/aws4_request, ..."
_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/,\s]+/([a-z0-9-]+)/aws4_request")
_TARGET_PREFIXES = {
    "AmazonSQS": "sqs",
    "DynamoDB_20120810": "dynamodb",
    "DynamoDBStreams_20120810": "dynamodbstreams",
    "RekognitionService": "rekognition",
}


def identify(
    method: str, headers: Mapping[str, str], query: Mapping[str, str], body: bytes
) -> Call:
    """Name the service from the signature's credential scope, else from X-Amz-Target."""
    target = headers.get("X-Amz-Target", "")
    prefix, _, target_operation = target.partition(".")
    scope = _SCOPE.search(headers.get("Authorization", "")) or _SCOPE.search(
        "Credential=" + query.get("X-Amz-Credential", "")
    )
    service = scope.group(1) if scope else _TARGET_PREFIXES.get(prefix, "unknown")
    content_type = headers.get("Content-Type", "")
    if target:
        version = "1.1" if "json-1.1" in content_type else "1.0"
        return Call(service, target_operation, Protocol.JSON, version)
    if content_type.startswith("application/x-www-form-urlencoded") and service != "s3":
        action = parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
        return Call(service, action or query.get("Action", ""), Protocol.QUERY)
    if service in ("sns", "sqs"):
        return Call(service, query.get("Action", method), Protocol.QUERY)
    return Call(service, method, Protocol.REST_XML)


@dataclass(frozen=True, slots=True)
class WireError:
    status: int
    code: str
    message: str
    json_type: str = ""  # the JSON protocols' ``__type``; defaults to the code
    query_code: str = ""  # an awsQueryCompatible service's x-amzn-query-error code
    sender_fault: bool = True


# Per service: (throttling, server error), as the service itself answers them.
_ERRORS: dict[str, tuple[WireError, WireError]] = {
    "s3": (
        WireError(503, "SlowDown", "Please reduce your request rate."),
        WireError(500, "InternalError", "We encountered an internal error. Please try again."),
    ),
    "sqs": (
        WireError(
            400,
            "RequestThrottled",
            "Rate exceeded",
            json_type="com.amazonaws.sqs#RequestThrottled",
            query_code="RequestThrottled",
        ),
        WireError(
            500,
            "InternalError",
            "The request processing has failed because of an unknown error.",
            json_type="com.amazonaws.sqs#InternalError",
            query_code="InternalError",
            sender_fault=False,
        ),
    ),
    "dynamodb": (
        WireError(
            400,
            "ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded.",
            json_type="com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        ),
        WireError(
            500,
            "InternalServerError",
            "Internal server error",
            json_type="com.amazonaws.dynamodb.v20120810#InternalServerError",
            sender_fault=False,
        ),
    ),
    "sns": (
        WireError(429, "Throttled", "Rate exceeded"),
        WireError(500, "InternalError", "Internal Error", sender_fault=False),
    ),
}
# Any other service: the generic throttling and server errors of AWS's front ends.
_GENERIC = (
    WireError(400, "ThrottlingException", "Rate exceeded"),
    WireError(500, "InternalServerError", "Internal server error", sender_fault=False),
)
# DynamoDB's other throttling answer, when a table is throttled at the partition or account.
DYNAMODB_THROTTLING = WireError(
    400,
    "ThrottlingException",
    "Rate of requests exceeds the allowed throughput.",
    json_type="com.amazon.coral.availability#ThrottlingException",
)


def error_for(call: Call, kind: FaultKind, *, alternate: bool = False) -> WireError:
    """The error ``call`` meets for ``kind``; lost answers are server errors to the client.

    ``alternate`` picks DynamoDB's ThrottlingException over ProvisionedThroughputExceeded.
    """
    throttle, server = _ERRORS.get(call.service, _GENERIC)
    if kind is FaultKind.THROTTLE:
        return DYNAMODB_THROTTLING if alternate and call.service == "dynamodb" else throttle
    return server


def render(call: Call, error: WireError) -> Reply:
    """The HTTP answer carrying ``error`` in the protocol the call was made in."""
    request_id = str(uuid.uuid4())
    if call.protocol is Protocol.JSON:
        body = {"__type": error.json_type or error.code, "message": error.message}
        headers = {
            "Content-Type": f"application/x-amz-json-{call.json_version}",
            "x-amzn-RequestId": request_id,
        }
        if error.query_code:
            fault = "Sender" if error.sender_fault else "Receiver"
            headers["x-amzn-query-error"] = f"{error.query_code};{fault}"
        return Reply(error.status, json.dumps(body).encode(), headers)
    if call.protocol is Protocol.QUERY:
        fault = "Sender" if error.sender_fault else "Receiver"
        xml = (
            '<?xml version="1.0"?>\n<ErrorResponse><Error>'
            f"<Type>{fault}</Type><Code>{error.query_code or error.code}</Code>"
            f"<Message>{error.message}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return Reply(error.status, xml.encode(), {"Content-Type": "text/xml"})
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>'
        f"<Code>{error.code}</Code><Message>{error.message}</Message>"
        f"<RequestId>{request_id[:16]}</RequestId><HostId>faultproxy</HostId></Error>"
    )
    return Reply(
        error.status,
        xml.encode(),
        {"Content-Type": "application/xml", "x-amz-request-id": request_id[:16]},
    )
