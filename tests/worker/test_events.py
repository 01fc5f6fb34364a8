"""parse_message: every accepted shape, key decoding, and refusal of everything else."""

from __future__ import annotations

import copy
import json
import random
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

import pytest

from mediamill_testkit.client import resend_test_event
from worker.dev.devstack import Stack
from worker.events import (
    MAX_BODY_BYTES,
    MalformedMessage,
    ParsedMessage,
    UploadEvent,
    parse_message,
)

BUCKET = "mm-prod-originals"
TOPIC_ARN = "arn:aws:sns:us-east-1:111122223333:mm-prod-uploads"


# --- bodies shaped like AWS's documented examples ---------------------------------------------


def s3_record(
    key: str,
    *,
    event_name: str = "ObjectCreated:Put",
    size: Any = 1024,
    etag: str = "d41d8cd98f00b204e9800998ecf8427e",
    version_id: str | None = None,
    sequencer: str | None = "0A1B2C3D4E5F678901",
    event_time: Any = "2026-11-27T11:03:31.362Z",
    event_source: str = "aws:s3",
    encode: bool = True,
) -> dict[str, Any]:
    """One record as in the S3 user guide's "Event message structure" (event version 2.1)."""
    obj: dict[str, Any] = {
        "key": quote_plus(key) if encode else key,
        "size": size,
        "eTag": etag,
    }
    if version_id is not None:
        obj["versionId"] = version_id
    if sequencer is not None:
        obj["sequencer"] = sequencer
    return {
        "eventVersion": "2.1",
        "eventSource": event_source,
        "awsRegion": "us-east-1",
        "eventTime": event_time,
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:AIDAJDPLRKLG7UEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.7"},
        "responseElements": {
            "x-amz-request-id": "C3D13FE58DE4C810",
            "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "originals-created",
            "bucket": {
                "name": BUCKET,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": f"arn:aws:s3:::{BUCKET}",
            },
            "object": obj,
        },
    }


def s3_event(*records: dict[str, Any]) -> str:
    return json.dumps({"Records": list(records)})


def sns_envelope(message: str) -> str:
    """S3 → SNS → SQS with raw delivery off: the S3 event is a JSON string in Message."""
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": TOPIC_ARN,
            "Subject": "Amazon S3 Notification",
            "Message": message,
            "Timestamp": "2026-11-27T11:03:31.512Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4Vbe=",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem",
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"
            f"&SubscriptionArn={TOPIC_ARN}:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55",
        }
    )


def eventbridge_event(
    key: str = "example-key",
    *,
    detail_type: str = "Object Created",
    source: str = "aws.s3",
    reason: str | None = "PutObject",
    size: Any = 5,
    time_: Any = "2021-11-12T00:00:00Z",
) -> dict[str, Any]:
    """The S3 user guide's "EventBridge event message structure" Object Created example."""
    detail: dict[str, Any] = {
        "version": "0",
        "bucket": {"name": BUCKET},
        "object": {
            "key": key,
            "size": size,
            "etag": "b1946ac92492d2347c6235b4d2611184",
            "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
            "sequencer": "617f08299329d189",
        },
        "request-id": "N4N7GDK58NMKJ12R",
        "requester": "123456789012",
        "source-ip-address": "1.2.3.4",
    }
    if reason is not None:
        detail["reason"] = reason
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": detail_type,
        "source": source,
        "account": "111122223333",
        "time": time_,
        "region": "ca-central-1",
        "resources": [f"arn:aws:s3:::{BUCKET}"],
        "detail": detail,
    }


TEST_EVENT = json.dumps(
    {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2026-11-27T10:59:02.000Z",
        "Bucket": BUCKET,
        "RequestId": "5582815E1AEA5ADF",
        "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
    }
)


def only_upload(body: str) -> UploadEvent:
    parsed = parse_message(body)
    assert parsed.ignored is None
    assert len(parsed.uploads) == 1
    return parsed.uploads[0]


# --- S3 notification, direct --------------------------------------------------------------------


def test_direct_record_gives_every_field() -> None:
    body = s3_event(
        s3_record(
            "originals/0123456789abcdef0123456789abcdef",
            event_name="ObjectCreated:Post",
            size=3_145_728,
            etag='"9b2cf535f27731c974343645a3985328"',
            version_id="096fKKXTRTtl3on89fVO.nfljtsv6qko",
        )
    )
    assert parse_message(body) == ParsedMessage(
        uploads=(
            UploadEvent(
                bucket=BUCKET,
                key="originals/0123456789abcdef0123456789abcdef",
                size=3_145_728,
                etag="9b2cf535f27731c974343645a3985328",
                version_id="096fKKXTRTtl3on89fVO.nfljtsv6qko",
                sequencer="0A1B2C3D4E5F678901",
                event_name="ObjectCreated:Post",
                event_time=datetime(2026, 11, 27, 11, 3, 31, 362000, tzinfo=UTC),
            ),
        ),
        ignored=None,
    )


@pytest.mark.parametrize(
    ("encoded", "key"),
    [
        ("originals/red+flower.jpg", "originals/red flower.jpg"),  # the S3 guide's example
        ("originals/c%2B%2B+notes.txt", "originals/c++ notes.txt"),
        ("originals/50%25+off.jpg", "originals/50% off.jpg"),
        ("originals/50%2525.jpg", "originals/50%25.jpg"),  # a literal "%25" is not decoded twice
        ("originals%2Fnested%2Fkey.jpg", "originals/nested/key.jpg"),  # moto encodes "/"
        ("originals/caf%C3%A9+%E6%97%A5%E6%9C%AC.jpg", "originals/café 日本.jpg"),
        ("originals/%F0%9F%93%B7.heic", "originals/📷.heic"),
        ("originals/a%3Ab%3Bc%3Dd%26e%3Ff%23g", "originals/a:b;c=d&e?f#g"),
    ],
)
def test_record_keys_are_url_decoded(encoded: str, key: str) -> None:
    body = s3_event(s3_record(encoded, encode=False))
    assert only_upload(body).key == key


@pytest.mark.parametrize(
    "key", ["originals/a b+c%d é.jpg", "originals/ +%2B%20 ", "originals/%", "x" * 1024]
)
def test_record_keys_round_trip_through_quote_plus(key: str) -> None:
    assert only_upload(s3_event(s3_record(key))).key == key


@pytest.mark.parametrize(
    "event_name", ["ObjectCreated:Put", "ObjectCreated:Post", "ObjectCreated:Copy",
                   "ObjectCreated:CompleteMultipartUpload"],
)  # fmt: skip
def test_every_object_created_event_is_an_upload(event_name: str) -> None:
    assert only_upload(s3_event(s3_record("k", event_name=event_name))).event_name == event_name


def test_several_records_give_several_uploads_in_order() -> None:
    keys = [f"originals/{n} photo.jpg" for n in range(5)]
    parsed = parse_message(s3_event(*(s3_record(k, size=n) for n, k in enumerate(keys))))
    assert [u.key for u in parsed.uploads] == keys
    assert [u.size for u in parsed.uploads] == [0, 1, 2, 3, 4]
    assert parsed.ignored is None


def test_records_other_than_object_created_are_skipped() -> None:
    body = s3_event(
        s3_record("gone.jpg", event_name="ObjectRemoved:Delete"),
        s3_record("kept.jpg"),
        s3_record("other.jpg", event_source="aws:s3-outposts"),
        s3_record("tagged.jpg", event_name="ObjectTagging:Put"),
    )
    parsed = parse_message(body)
    assert [u.key for u in parsed.uploads] == ["kept.jpg"]
    assert parsed.ignored is None


def test_only_removed_records_are_ignored_with_the_reason() -> None:
    body = s3_event(
        s3_record("a.jpg", event_name="ObjectRemoved:Delete"),
        s3_record("b.jpg", event_name="ObjectRemoved:Delete"),
        s3_record("c.jpg", event_name="ObjectRemoved:DeleteMarkerCreated"),
    )
    assert parse_message(body) == ParsedMessage(
        uploads=(),
        ignored="no ObjectCreated records: ObjectRemoved:Delete, ObjectRemoved:DeleteMarkerCreated",
    )


def test_records_from_another_source_are_ignored() -> None:
    parsed = parse_message(s3_event(s3_record("a.jpg", event_source="aws:lambda")))
    assert parsed.uploads == ()
    assert parsed.ignored == "no ObjectCreated records: aws:lambda ObjectCreated:Put"


def test_a_removed_record_needs_no_object_fields() -> None:
    record = s3_record("a.jpg", event_name="ObjectRemoved:Delete")
    del record["s3"]
    assert (
        parse_message(s3_event(record)).ignored == "no ObjectCreated records: ObjectRemoved:Delete"
    )


def test_an_empty_object_is_still_an_upload() -> None:
    assert only_upload(s3_event(s3_record("originals/empty.jpg", size=0))).size == 0


def test_etag_quotes_are_stripped_and_optional_fields_may_be_absent_or_null() -> None:
    record = s3_record("k", etag='"abc-12"', sequencer=None)
    record["s3"]["object"]["versionId"] = None
    upload = only_upload(s3_event(record))
    assert (upload.etag, upload.version_id, upload.sequencer) == ("abc-12", None, None)


def test_unknown_fields_are_ignored() -> None:
    record = s3_record("k")
    record["glacierEventData"] = {"restoreEventData": {"lifecycleRestoreStorageClass": "GLACIER"}}
    record["s3"]["object"]["contentType"] = "image/jpeg"
    body = json.dumps({"Records": [record], "somethingNew": [1, 2, 3]})
    assert only_upload(body).key == "k"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-27T11:03:31.362Z", datetime(2026, 11, 27, 11, 3, 31, 362000, tzinfo=UTC)),
        ("2026-11-27T11:03:31Z", datetime(2026, 11, 27, 11, 3, 31, tzinfo=UTC)),
        ("2026-11-27T13:03:31.362+02:00", datetime(2026, 11, 27, 11, 3, 31, 362000, tzinfo=UTC)),
        ("2026-11-27T11:03:31", datetime(2026, 11, 27, 11, 3, 31, tzinfo=UTC)),
        ("The time, in ISO-8601 format", None),
        ("2026-13-45T99:00:00Z", None),
        ("0001-01-01T00:00:00+01:00", None),  # before datetime.min once in UTC
        ("", None),
        (1764241411, None),
        (None, None),
    ],
)
def test_event_time_is_aware_utc_or_none(value: Any, expected: datetime | None) -> None:
    upload = only_upload(s3_event(s3_record("k", event_time=value)))
    assert upload.event_time == expected
    if upload.event_time is not None:
        assert upload.event_time.utcoffset() is not None
        assert upload.event_time.tzinfo == UTC


def test_missing_event_time_is_none() -> None:
    record = s3_record("k")
    del record["eventTime"]
    assert only_upload(s3_event(record)).event_time is None


# --- through SNS ----------------------------------------------------------------------------


def test_sns_envelope_gives_the_same_uploads_as_the_raw_event() -> None:
    raw = s3_event(s3_record("originals/a b+c%d é.jpg"), s3_record("originals/second.png"))
    wrapped = sns_envelope(raw)
    assert parse_message(wrapped) == parse_message(raw)
    assert [u.key for u in parse_message(wrapped).uploads] == [
        "originals/a b+c%d é.jpg",
        "originals/second.png",
    ]


def test_sns_envelope_with_only_removed_records_is_ignored() -> None:
    wrapped = sns_envelope(s3_event(s3_record("a", event_name="ObjectRemoved:Delete")))
    assert parse_message(wrapped).ignored == "no ObjectCreated records: ObjectRemoved:Delete"


def test_eventbridge_event_inside_sns_is_understood() -> None:
    upload = only_upload(sns_envelope(json.dumps(eventbridge_event())))
    assert upload.key == "example-key"


# --- EventBridge ------------------------------------------------------------------------------


def test_eventbridge_object_created_gives_every_field() -> None:
    assert parse_message(json.dumps(eventbridge_event())) == ParsedMessage(
        uploads=(
            UploadEvent(
                bucket=BUCKET,
                key="example-key",
                size=5,
                etag="b1946ac92492d2347c6235b4d2611184",
                version_id="IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
                sequencer="617f08299329d189",
                event_name="ObjectCreated:Put",
                event_time=datetime(2021, 11, 12, tzinfo=UTC),
            ),
        )
    )


@pytest.mark.parametrize(
    "key", ["originals/a b+c%d é.jpg", "originals/red+flower.jpg", "originals/50%25.jpg"]
)
def test_eventbridge_keys_are_taken_verbatim(key: str) -> None:
    # AWS documents URL encoding for the notification format only; see worker/events.py.
    assert only_upload(json.dumps(eventbridge_event(key))).key == key


@pytest.mark.parametrize(
    ("reason", "event_name"),
    [
        ("PutObject", "ObjectCreated:Put"),
        ("POST Object", "ObjectCreated:Post"),
        ("CopyObject", "ObjectCreated:Copy"),
        ("CompleteMultipartUpload", "ObjectCreated:CompleteMultipartUpload"),
        ("SomethingNew", "ObjectCreated:SomethingNew"),
        (None, "ObjectCreated"),
    ],
)
def test_eventbridge_reason_becomes_the_notification_event_name(
    reason: str | None, event_name: str
) -> None:
    upload = only_upload(json.dumps(eventbridge_event(reason=reason)))
    assert upload.event_name == event_name


def test_eventbridge_bad_time_does_not_fail_the_upload() -> None:
    assert only_upload(json.dumps(eventbridge_event(time_="yesterday"))).event_time is None


def test_eventbridge_zero_size_is_an_upload() -> None:
    assert only_upload(json.dumps(eventbridge_event(size=0))).size == 0


def test_eventbridge_other_s3_events_are_ignored() -> None:
    body = json.dumps(eventbridge_event(detail_type="Object Deleted", reason="DeleteObject"))
    assert parse_message(body) == ParsedMessage(uploads=(), ignored="EventBridge Object Deleted")


# --- s3:TestEvent -------------------------------------------------------------------------


def test_test_event_is_ignored() -> None:
    assert parse_message(TEST_EVENT) == ParsedMessage(uploads=(), ignored="s3:TestEvent")


def test_test_event_inside_sns_is_ignored() -> None:
    assert parse_message(sns_envelope(TEST_EVENT)) == ParsedMessage(
        uploads=(), ignored="s3:TestEvent"
    )


# --- everything else is MalformedMessage ----------------------------------------------------


def _created(**changes: Any) -> dict[str, Any]:
    record = s3_record("originals/k.jpg")
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = record
        for part in parents:
            node = node[part]
        if value is _DELETE:
            del node[leaf]
        else:
            node[leaf] = value
    return record


_DELETE = object()

GARBAGE: dict[str, str] = {
    "empty": "",
    "whitespace": " \n\t ",
    "not json": "hello, world",
    "truncated json": s3_event(s3_record("k"))[:-5],
    "json array": "[]",
    "json string": '"Records"',
    "json number": "42",
    "json null": "null",
    "json true": "true",
    "empty object": "{}",
    "unknown object": '{"hello": "world"}',
    "records not a list": '{"Records": {"eventName": "ObjectCreated:Put"}}',
    "records a string": '{"Records": "[]"}',
    "records empty": '{"Records": []}',
    "record not an object": '{"Records": [42]}',
    "record without eventName": s3_event(_created(eventName=_DELETE)),
    "record without eventSource": s3_event(_created(eventSource=_DELETE)),
    "record without s3": s3_event(_created(s3=_DELETE)),
    "missing bucket": s3_event(_created(s3__bucket=_DELETE)),
    "missing bucket name": s3_event(_created(s3__bucket__name=_DELETE)),
    "empty bucket name": s3_event(_created(s3__bucket__name="")),
    "bucket name with slash": s3_event(_created(s3__bucket__name="a/b")),
    "missing object": s3_event(_created(s3__object=_DELETE)),
    "missing key": s3_event(_created(s3__object__key=_DELETE)),
    "missing size": s3_event(_created(s3__object__size=_DELETE)),
    "missing etag": s3_event(_created(s3__object__eTag=_DELETE)),
    "negative size": s3_event(_created(s3__object__size=-1)),
    "size as string": s3_event(_created(s3__object__size="1024")),
    "size as float": s3_event(_created(s3__object__size=10.5)),
    "size as bool": s3_event(_created(s3__object__size=True)),
    "size null": s3_event(_created(s3__object__size=None)),
    "key as number": s3_event(_created(s3__object__key=12345)),
    "key as list": s3_event(_created(s3__object__key=["a"])),
    "key null": s3_event(_created(s3__object__key=None)),
    "empty key": s3_event(_created(s3__object__key="")),
    "key decodes to nul": s3_event(_created(s3__object__key="originals/a%00b")),
    "key with raw nul": s3_event(_created(s3__object__key="originals/a\x00b")),
    "key not utf-8": s3_event(_created(s3__object__key="originals/%FF%FE")),
    "key lone surrogate": s3_event(_created(s3__object__key="originals/\ud800")),
    "key too long": s3_event(_created(s3__object__key="a" * 1025)),
    "key too long once decoded": s3_event(_created(s3__object__key="%C3%A9" * 513)),
    "one bad record among good ones": s3_event(
        s3_record("good.jpg"), _created(s3__object__size=-5), s3_record("also-good.jpg")
    ),
    "sns message not json": sns_envelope("this is not json"),
    "sns message empty": sns_envelope(""),
    "sns message a json list": sns_envelope("[1, 2]"),
    "sns message not a string": json.dumps({"Type": "Notification", "Message": {"Records": []}}),
    "sns without message": json.dumps({"Type": "Notification", "MessageId": "x"}),
    "sns subscription confirmation": json.dumps(
        {"Type": "SubscriptionConfirmation", "Message": "You have chosen to subscribe"}
    ),
    "sns inside sns": sns_envelope(sns_envelope(TEST_EVENT)),
    "sns message unknown object": sns_envelope('{"hello": 1}'),
    "sns message with bad record": sns_envelope(s3_event(_created(s3__object__key=7))),
    "test event from another service": json.dumps({"Service": "Other", "Event": "s3:TestEvent"}),
    "unknown test event": json.dumps({"Service": "Amazon S3", "Event": "s3:SomethingElse"}),
    "eventbridge from another source": json.dumps(eventbridge_event(source="aws.ec2")),
    "eventbridge without detail": json.dumps(
        {k: v for k, v in eventbridge_event().items() if k != "detail"}
    ),
    "eventbridge negative size": json.dumps(eventbridge_event(size=-1)),
    "eventbridge empty key": json.dumps(eventbridge_event("")),
    "eventbridge nul key": json.dumps(eventbridge_event("a\x00b")),
    "deeply nested array": "[" * 100_000 + "]" * 100_000,
    "deeply nested object": '{"a":' * 50_000 + "1" + "}" * 50_000,
    "deep junk in records": '{"Records": ' + "[" * 5_000 + "]" * 5_000 + "}",
    "huge integer": '{"Records": [' + "9" * 5_000 + "]}",
    "nan size": s3_event(_created(s3__object__size=float("nan"))),
    "too large": " " * (MAX_BODY_BYTES + 1),
}


@pytest.mark.parametrize("body", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_is_malformed_with_a_short_reason(body: str) -> None:
    with pytest.raises(MalformedMessage) as caught:
        parse_message(body)
    reason = str(caught.value)
    assert reason
    assert len(reason) <= 300
    assert "\n" not in reason


def test_malformed_is_a_value_error() -> None:
    assert issubclass(MalformedMessage, ValueError)


def test_reasons_quote_the_body_only_in_part() -> None:
    body = "not json " + "x" * 10_000
    with pytest.raises(MalformedMessage, match=r"^body is not JSON") as caught:
        parse_message(body)
    assert "x" * 300 not in str(caught.value)
    assert "not json xxx" in str(caught.value)


def test_reasons_name_the_problem() -> None:
    with pytest.raises(MalformedMessage, match=r"record 1: s3\.object\.size"):
        parse_message(s3_event(s3_record("a"), _created(s3__object__size=-1)))
    with pytest.raises(MalformedMessage, match="SNS Message is not JSON"):
        parse_message(sns_envelope("oops"))
    with pytest.raises(MalformedMessage, match="NUL"):
        parse_message(s3_event(_created(s3__object__key="a%00")))


def test_body_of_exactly_the_sqs_limit_is_accepted() -> None:
    body = s3_event(s3_record("k"))
    body += " " * (MAX_BODY_BYTES - len(body.encode()))
    assert len(body.encode()) == MAX_BODY_BYTES
    assert only_upload(body).key == "k"
    with pytest.raises(MalformedMessage, match="KiB"):
        parse_message(body + " ")


def test_body_limit_counts_utf8_bytes_not_characters() -> None:
    body = s3_event(s3_record("k"))
    padding = (MAX_BODY_BYTES - len(body.encode())) // 2 + 1
    body = body[:-1] + ', "pad": "' + "é" * padding + '"}'
    assert len(body) < MAX_BODY_BYTES < len(body.encode())
    with pytest.raises(MalformedMessage, match="KiB"):
        parse_message(body)


# --- property-style: no input string makes parse_message raise anything else ----------------

_JUNK_VALUES: list[Any] = [
    None, True, False, 0, -1, 2**70, 1.5, float("inf"), "", " ", "\x00", "%00", "%FF", "+",
    "\ud800", "é", "ObjectCreated:Put", "aws:s3", "s3:TestEvent", "Notification", "x" * 2000,
    [], {}, [[[[[]]]]], {"a": {"b": {"c": {}}}}, ["ObjectCreated:Put"], {"key": 1},
]  # fmt: skip
_JUNK_TEXT = ['"', "{", "}", "[", "]", ",", ":", "\\", "\\u0000", "\x00", "é", "%", "+", "null"]


def _seed_documents() -> list[Any]:
    return [
        json.loads(s3_event(s3_record("originals/a b+c%d é.jpg"), s3_record("x/y.png", size=0))),
        json.loads(s3_event(s3_record("a", event_name="ObjectRemoved:Delete"), s3_record("b"))),
        json.loads(sns_envelope(s3_event(s3_record("originals/photo 1.jpg")))),
        json.loads(sns_envelope(TEST_EVENT)),
        json.loads(TEST_EVENT),
        eventbridge_event("originals/z.jpg"),
    ]


def _nodes(document: Any) -> list[tuple[Any, Any]]:
    """Every (container, index-or-key) pair in a JSON document."""
    found: list[tuple[Any, Any]] = []
    stack = [document]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for slot, child in list(items):
            found.append((node, slot))
            if isinstance(child, dict | list):
                stack.append(child)
    return found


def _mutate_structure(rng: random.Random, document: Any) -> Any:
    document = copy.deepcopy(document)
    for _ in range(rng.randint(1, 3)):
        nodes = _nodes(document)
        if not nodes:
            break
        parent, slot = rng.choice(nodes)
        action = rng.random()
        if action < 0.55:
            parent[slot] = copy.deepcopy(rng.choice(_JUNK_VALUES))
        elif action < 0.75:
            del parent[slot]
        elif action < 0.85 and isinstance(parent[slot], str) and parent[slot].startswith("{"):
            # The SNS Message: mutate the S3 event inside it, then put it back as a string.
            parent[slot] = json.dumps(_mutate_structure(rng, json.loads(parent[slot])))
        else:
            parent[slot] = [parent[slot]] if rng.random() < 0.5 else {"wrapped": parent[slot]}
    return document


def _mutate_text(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(text) + 1)
        action = rng.random()
        if action < 0.35:
            text = text[:at] + text[at + rng.randint(1, 20) :]
        elif action < 0.7:
            text = text[:at] + rng.choice(_JUNK_TEXT) + text[at:]
        elif action < 0.85:
            text = text[:at]
        else:
            end = min(len(text), at + rng.randint(1, 50))
            text = text[:at] + text[at:end] * rng.randint(2, 5) + text[at:]
    return text


def test_no_mutated_body_raises_anything_but_malformed() -> None:
    rng = random.Random(20261127)
    seeds = _seed_documents()
    outcomes = {"uploads": 0, "ignored": 0, "malformed": 0}
    for _ in range(10_000):
        document = rng.choice(seeds)
        if rng.random() < 0.6:
            body = json.dumps(_mutate_structure(rng, document))
        else:
            body = _mutate_text(rng, json.dumps(document, ensure_ascii=rng.random() < 0.5))
        reason: str | None = None
        try:
            parsed = parse_message(body)
        except MalformedMessage as exc:
            reason = str(exc)
        if reason is not None:
            outcomes["malformed"] += 1
            assert 0 < len(reason) <= 300
            continue
        assert isinstance(parsed, ParsedMessage)
        if parsed.uploads:
            outcomes["uploads"] += 1
            assert parsed.ignored is None
        else:
            outcomes["ignored"] += 1
            assert parsed.ignored
        for upload in parsed.uploads:
            assert isinstance(upload.key, str)
            assert upload.key
            assert "\x00" not in upload.key
            assert len(upload.key.encode("utf-8")) <= 1024
            assert isinstance(upload.size, int)
            assert not isinstance(upload.size, bool)
            assert upload.size >= 0
            assert isinstance(upload.bucket, str)
            assert upload.bucket
            assert isinstance(upload.etag, str)
            assert upload.event_time is None or upload.event_time.tzinfo == UTC
    # The loop exercised all three outcomes, not only the error path.
    assert min(outcomes.values()) > 50, outcomes


# --- against the emulated AWS: S3 → SNS → SQS, raw delivery off -----------------------------

ROUND_TRIP_KEYS = [
    "originals/a b+c%d é.jpg",
    "originals/50%25 off + more.jpg",
    "originals/日本/写真 1.png",
    "originals/what?#&=;:,@$.heic",
    "originals/0123456789abcdef0123456789abcdef",
]


def _receive_all(sqs: Any, queue_url: str, count: int) -> list[str]:
    bodies: list[str] = []
    deadline = time.monotonic() + 20
    while len(bodies) < count and time.monotonic() < deadline:
        response = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        for message in response.get("Messages", []):
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def test_moto_s3_sns_sqs_round_trip(stack: Stack, s3: Any, sqs: Any) -> None:
    bucket = stack.names.originals_bucket
    resend_test_event(s3, sqs, bucket, stack.queue_url)
    for n, key in enumerate(ROUND_TRIP_KEYS):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x" * n)

    bodies = _receive_all(sqs, stack.queue_url, len(ROUND_TRIP_KEYS) + 1)
    assert len(bodies) == len(ROUND_TRIP_KEYS) + 1
    parsed = [parse_message(body) for body in bodies]

    assert parsed[0] == ParsedMessage(uploads=(), ignored="s3:TestEvent")
    uploads = [upload for message in parsed[1:] for upload in message.uploads]
    assert sorted(u.key for u in uploads) == sorted(ROUND_TRIP_KEYS)
    # The keys really were encoded on the wire, so the test exercised the decoding.
    assert any("a+b%2Bc%25d" in body for body in bodies)
    for upload in uploads:
        assert upload.bucket == bucket
        assert upload.event_name == "ObjectCreated:Put"
        assert upload.event_time is not None
        # The classic NoSuchKey bug: the decoded key must name the object that was put.
        head = s3.head_object(Bucket=bucket, Key=upload.key)
        assert head["ContentLength"] == upload.size == ROUND_TRIP_KEYS.index(upload.key)
        assert head["ETag"].strip('"') == upload.etag


def test_moto_s3_straight_to_sqs(stack: Stack, s3: Any, sqs: Any) -> None:
    """Shape 1 as moto sends it: a bucket notifying a queue directly."""
    name = f"{stack.names.prefix}-direct"
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    s3.create_bucket(Bucket=name)
    try:
        s3.put_bucket_notification_configuration(
            Bucket=name,
            NotificationConfiguration={
                "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]
            },
        )
        s3.put_object(Bucket=name, Key="originals/a b+c%d é.jpg", Body=b"")
        bodies = _receive_all(sqs, queue_url, 2)
        assert [parse_message(body) for body in bodies][-1].uploads[0].key == (
            "originals/a b+c%d é.jpg"
        )
        assert parse_message(bodies[-1]).uploads[0].size == 0
        assert parse_message(bodies[0]).ignored == "s3:TestEvent"
    finally:
        s3.delete_object(Bucket=name, Key="originals/a b+c%d é.jpg")
        s3.delete_bucket(Bucket=name)
        sqs.delete_queue(QueueUrl=queue_url)
