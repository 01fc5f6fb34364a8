"""Timestamps parsed without dateutil's parser, to exactly what botocore's own parser returns."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import boto3
import botocore.session
import dateutil.parser
import pytest
from botocore.utils import parse_timestamp as botocore_parse_timestamp

from mediamill_core.botocore_tuning import boto3_session, parse_timestamp, tune_session
from mediamill_core.settings import load_settings
from worker.aws import open_clients

# The shapes AWS sends, and odd ones at the edges of the fast path.
SHAPES: list[Any] = [
    # S3's Last-Modified, Date and Expires headers (RFC 7231).
    "Wed, 02 Dec 2026 06:49:45 GMT",
    "Thu, 01 Jan 1970 00:00:00 GMT",
    "Fri, 13 Feb 1931 23:59:59 GMT",
    "Sun, 29 Feb 2032 12:00:00 GMT",
    "Mon, 02 Dec 2026 06:49:45 GMT",  # the wrong weekday: neither parser checks it
    "Wed, 31 Jun 2026 06:49:45 GMT",  # no such day: both refuse
    "Wed, 02 Dec 2026 23:59:60 GMT",  # a leap second: both refuse
    "Wed, 02 Dec 2026 06:49:45 UTC",
    "Wed, 02 Dec 2026 06:49:45 +0000",
    "Wed, 2 Dec 2026 06:49:45 GMT",
    "Wednesday, 02-Dec-26 06:49:45 GMT",  # RFC 850
    "Wed Dec  2 06:49:45 2026",  # asctime
    "Wed, 02 Dec 0999 06:49:45 GMT",
    # S3 ListObjectsV2 and other XML bodies, JSON APIs' ISO strings.
    "2026-12-02T06:49:45.000Z",
    "2026-12-02T06:49:45Z",
    "2026-12-02T06:49:45.5Z",
    "2026-12-02T06:49:45.12Z",
    "2026-12-02T06:49:45.123456Z",
    "2026-12-02T06:49:45.1234567Z",
    "2026-12-02T06:49:45.123456789Z",
    "2026-12-02T06:49:45+00:00",
    "2026-12-02T06:49:45.250-00:00",
    "2026-12-02T06:49:45z",
    "2026-12-02T23:59:59Z",
    "2026-12-02T23:59:60Z",
    "2026-12-02T24:00:00Z",
    "2026-02-30T06:49:45Z",
    "1969-07-20T20:17:40Z",
    "1900-01-01T00:00:00.000Z",
    "2026-12-02T06:49:45+02:00",
    "2026-12-02T06:49:45-05:30",
    "2026-12-02T06:49:45",
    "2026-12-02 06:49:45Z",
    "2026-12-02",
    "20261202T064945Z",
    # DynamoDB, SQS and SNS epoch seconds, as numbers and as strings.
    1764658185,
    1764658185.123,
    0,
    -14182940.5,
    "1764658185",
    "1764658185.5",
    # Not timestamps at all.
    "",
    "yesterday",
]

# The local zones a host may have: UTC (Fargate, Lambda), zones with daylight saving time, a
# zone named GMT, a half-hour offset, and a POSIX zone called UTC only in summer.
ZONES = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Europe/London",
    "Asia/Kolkata",
    "GMT",
    "XYZ0UTC,M3.2.0,M11.1.0",
]


@pytest.fixture(params=ZONES)
def local_zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


def _outcome(parse: Any, value: Any) -> tuple[str, ...]:
    """Everything a caller can see of the answer, the tzinfo's type included."""
    try:
        parsed: datetime = parse(value)
    except ValueError as error:
        return ("ValueError", str(error))
    return (
        repr(parsed),
        type(parsed.tzinfo).__name__,
        str(parsed.utcoffset()),
        str(parsed.tzname()),
        str(parsed.dst()),
        parsed.isoformat(),
    )


@pytest.mark.parametrize("value", SHAPES, ids=repr)
def test_every_shape_parses_as_botocore_parses_it(local_zone: str, value: Any) -> None:
    assert _outcome(parse_timestamp, value) == _outcome(botocore_parse_timestamp, value)


def test_the_shapes_aws_sends_never_reach_dateutil(
    local_zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = {value: _outcome(botocore_parse_timestamp, value) for value in _AWS_SHAPES}
    monkeypatch.setattr(dateutil.parser, "parse", _no_dateutil)
    if local_zone == "XYZ0UTC,M3.2.0,M11.1.0":
        # A zone called UTC part of the year: dateutil's rules decide, dateutil is asked.
        with pytest.raises(AssertionError, match="dateutil"):
            parse_timestamp("2026-12-02T06:49:45.000Z")
        return
    assert {value: _outcome(parse_timestamp, value) for value in _AWS_SHAPES} == expected


_AWS_SHAPES = ["Wed, 02 Dec 2026 06:49:45 GMT", "2026-12-02T06:49:45.000Z", "2026-12-02T06:49:45Z"]


def _no_dateutil(*_: Any, **__: Any) -> None:
    raise AssertionError("dateutil's parser was called")


def _no_dateutil_on_this_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """dateutil refused to the test's thread; moto's server threads (serialising) keep it."""
    parse, here = dateutil.parser.parse, threading.get_ident()

    def guarded(*args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() == here:
            _no_dateutil()
        return parse(*args, **kwargs)

    monkeypatch.setattr(dateutil.parser, "parse", guarded)


def test_clients_of_a_tuned_session_read_s3_timestamps_as_untuned_clients(
    aws_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tuned, plain = (
        session.client("s3", endpoint_url=aws_endpoint, region_name="us-east-1")
        for session in (boto3_session(), boto3.session.Session())
    )
    bucket = f"ts-{uuid.uuid4().hex[:12]}"
    plain.create_bucket(Bucket=bucket)
    plain.put_object(Bucket=bucket, Key="a/original", Body=b"x" * 10)

    def timestamps(s3: Any) -> list[str]:
        got = s3.get_object(Bucket=bucket, Key="a/original")
        got["Body"].read()
        head = s3.head_object(Bucket=bucket, Key="a/original")
        listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
        return [repr(t["LastModified"]) for t in (got, head, listed[0])]

    expected = timestamps(plain)
    # The tuned client gives the same answers without asking dateutil.
    _no_dateutil_on_this_thread(monkeypatch)
    assert timestamps(tuned) == expected
    with pytest.raises(AssertionError, match="dateutil"):
        timestamps(plain)


def test_the_workers_clients_read_s3_timestamps_without_dateutil(
    aws_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = boto3.session.Session().client("s3", endpoint_url=aws_endpoint, region_name="us-east-1")
    bucket = f"ts-{uuid.uuid4().hex[:12]}"
    plain.create_bucket(Bucket=bucket)
    plain.put_object(Bucket=bucket, Key="a/original", Body=b"x")
    # botocore's own answers: tzutc() from the header, the local zone from the listing's ISO
    # string where the local zone is called UTC (dateutil's rule).
    expected = (
        repr(plain.head_object(Bucket=bucket, Key="a/original")["LastModified"]),
        repr(plain.list_objects_v2(Bucket=bucket)["Contents"][0]["LastModified"]),
    )

    async def worker_reads() -> tuple[str, str]:
        async with open_clients(
            load_settings(endpoint_url=aws_endpoint, region="us-east-1")
        ) as aws:
            got = await aws.s3.get_object(Bucket=bucket, Key="a/original")
            await got["Body"].read()
            listed = await aws.s3.list_objects_v2(Bucket=bucket)
            return repr(got["LastModified"]), repr(listed["Contents"][0]["LastModified"])

    _no_dateutil_on_this_thread(monkeypatch)
    assert asyncio.run(worker_reads()) == expected


def test_tune_session_returns_the_session_it_was_given() -> None:
    session = botocore.session.get_session()
    assert tune_session(session) is session
