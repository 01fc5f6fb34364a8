"""The User-Agent header built once per set of features, the same bytes botocore would send."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from mediamill_core import botocore_tuning
from mediamill_core.botocore_tuning import cache_user_agent, tune
from mediamill_testkit.endpoints import ruleset_evaluations


def _client(service: str, endpoint: str) -> Any:
    # A session of its own each: botocore's client features (credentials from the environment,
    # say) are recorded by the first client of a session that loads them.
    return boto3.session.Session().client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _sent_user_agents(client: Any) -> list[bytes | str]:
    sent: list[bytes | str] = []

    def keep(request: Any, **_: Any) -> None:
        sent.append(request.headers["User-Agent"])

    client.meta.events.register("before-send", keep)
    return sent


def _calls(s3: Any, bucket: str) -> None:
    s3.create_bucket(Bucket=bucket)
    for n in range(3):
        s3.put_object(Bucket=bucket, Key=f"k/{n}", Body=b"x" * n)
        s3.head_object(Bucket=bucket, Key=f"k/{n}")
    s3.list_objects_v2(Bucket=bucket)
    s3.get_object(Bucket=bucket, Key="k/1")["Body"].read()


def test_every_call_sends_the_user_agent_botocore_would_build(aws_endpoint: str) -> None:
    plain, cached = _client("s3", aws_endpoint), _client("s3", aws_endpoint)
    assert cache_user_agent(cached)
    plain_sent, cached_sent = _sent_user_agents(plain), _sent_user_agents(cached)
    _calls(plain, f"ua-{uuid.uuid4().hex[:12]}")
    _calls(cached, f"ua-{uuid.uuid4().hex[:12]}")
    assert len(cached_sent) == len(plain_sent) == 9
    # The same components, in botocore's order but for the features (a set, joined unordered).
    assert [_components(ua) for ua in cached_sent] == [_components(ua) for ua in plain_sent]
    assert any(b" m/" in bytes(_bytes(ua)) for ua in cached_sent)


def _bytes(ua: bytes | str) -> bytes:
    return ua if isinstance(ua, bytes) else ua.encode()


def _components(ua: bytes | str) -> list[object]:
    parts: list[object] = []
    for part in _bytes(ua).decode().split(" "):
        if part.startswith("m/"):
            parts.append(frozenset(part[2:].split(",")))
        else:
            parts.append(part)
    return parts


def test_the_string_is_built_once_per_set_of_features(aws_endpoint: str) -> None:
    s3 = _client("s3", aws_endpoint)
    builds = 0
    build = s3._user_agent_creator.to_string

    def counted() -> str:
        nonlocal builds
        builds += 1
        return str(build())

    s3._user_agent_creator.to_string = counted
    assert cache_user_agent(s3)
    _calls(s3, f"ua-{uuid.uuid4().hex[:12]}")
    # Nine calls would build it eighteen times (twice each); a few sets of features build it
    # once each: the calls' own (each operation's checksum and credential features) and their
    # second look, once credentials are known.
    assert 1 <= builds <= 6


@pytest.fixture
def fresh_warning() -> Iterator[None]:
    botocore_tuning._warn_once.cache_clear()
    yield
    botocore_tuning._warn_once.cache_clear()


def test_a_botocore_without_the_creator_is_left_alone_with_one_warning(
    aws_endpoint: str, caplog: pytest.LogCaptureFixture, fresh_warning: None
) -> None:
    clients = [_client("sqs", aws_endpoint) for _ in range(2)]
    for client in clients:
        del client._user_agent_creator._client_features
    with caplog.at_level(logging.WARNING, logger=botocore_tuning.__name__):
        assert [cache_user_agent(client) for client in clients] == [False, False]
    assert len(caplog.records) == 1
    assert "built on every call" in caplog.records[0].getMessage()


def test_tune_also_resolves_endpoints_once_per_bucket(aws_endpoint: str) -> None:
    s3 = _client("s3", aws_endpoint)
    tune(s3)
    bucket = f"ua-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    before = ruleset_evaluations()
    for n in range(10):
        s3.put_object(Bucket=bucket, Key=f"many/{n}", Body=b"x")
    assert ruleset_evaluations() - before <= 1


def test_features_the_client_gains_later_are_in_the_next_call_s_header(
    aws_endpoint: str,
) -> None:
    sqs = _client("sqs", aws_endpoint)
    assert cache_user_agent(sqs)
    sent = _sent_user_agents(sqs)
    sqs.list_queues()
    creator = sqs._user_agent_creator
    # As botocore does when a client's credentials are loaded after its first call.
    creator.set_client_features({*(creator._client_features or ()), "g"})
    sqs.list_queues()
    first, last = (
        next(part for part in _components(ua) if isinstance(part, frozenset)) for ua in sent
    )
    assert "g" not in first
    assert "g" in last
