"""Endpoint resolution once per bucket, not per key: the ruleset parameters no rule reads."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from mediamill_core import endpoint_parameters
from mediamill_core.endpoint_parameters import (
    referenced_parameters,
    resolve_endpoints_per_bucket,
    unreferenced_parameters,
)
from mediamill_testkit.endpoints import ruleset_evaluations

# A ruleset of the shape botocore loads: Region is read by a condition, Stage only inside a
# template string, Key and Tag by nothing (Tag is required, so resolution still needs it).
TINY_RULESET: dict[str, Any] = {
    "version": "1.0",
    "parameters": {
        "Region": {"type": "String", "builtIn": "AWS::Region"},
        "Stage": {"type": "String"},
        "Key": {"type": "String"},
        "Tag": {"type": "String", "required": True},
        "Flag": {"type": "Boolean", "required": True, "default": False},
    },
    "rules": [
        {
            "conditions": [{"fn": "isSet", "argv": [{"ref": "Region"}]}],
            "rules": [
                {
                    "conditions": [],
                    "endpoint": {"url": "https://svc.{Region}.example/{Stage#x}", "headers": {}},
                    "type": "endpoint",
                }
            ],
            "type": "tree",
        },
        {"conditions": [], "error": "no region", "type": "error"},
    ],
}


def test_referenced_names_are_refs_and_template_placeholders() -> None:
    assert referenced_parameters(TINY_RULESET["rules"]) == {"Region", "Stage"}


def test_unread_parameters_are_left_out_unless_resolution_requires_them() -> None:
    # Tag is required without a default: the ruleset refuses to resolve without it.
    assert unreferenced_parameters(TINY_RULESET) == {"Key", "Flag"}


def test_objects_under_many_keys_resolve_the_endpoint_once_per_bucket(s3: Any) -> None:
    assert resolve_endpoints_per_bucket(s3) == {"Key", "Prefix", "CopySource"}
    buckets = [f"ep-{uuid.uuid4().hex[:12]}" for _ in range(2)]
    for bucket in buckets:
        s3.create_bucket(Bucket=bucket)

    before = ruleset_evaluations()
    for bucket in buckets:
        for i in range(25):
            s3.put_object(
                Bucket=bucket, Key=f"media/{i}/preview.jpg", Body=f"{bucket}/{i}".encode()
            )
    assert ruleset_evaluations() - before == len(buckets)

    for bucket in buckets:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix="media/")["Contents"]
        assert sorted(o["Key"] for o in listed) == sorted(
            f"media/{i}/preview.jpg" for i in range(25)
        )
        body = s3.get_object(Bucket=bucket, Key="media/7/preview.jpg")["Body"].read()
        assert body == f"{bucket}/7".encode()


def test_services_whose_rulesets_read_every_parameter_are_left_as_they_are(sqs: Any) -> None:
    assert resolve_endpoints_per_bucket(sqs) == frozenset()
    assert sqs.list_queues()["ResponseMetadata"]["HTTPStatusCode"] == 200


@pytest.fixture
def fresh_warning() -> Iterator[None]:
    endpoint_parameters._warn_once.cache_clear()
    yield
    endpoint_parameters._warn_once.cache_clear()


@pytest.mark.usefixtures("fresh_warning")
def test_changed_botocore_internals_warn_once_and_calls_still_work(
    s3: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # As if an upgrade renamed the loader the ruleset is read with; object calls never use it.
    del s3._loader
    bucket = f"ep-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)

    with caplog.at_level(logging.WARNING, logger=endpoint_parameters.__name__):
        assert resolve_endpoints_per_bucket(s3) == frozenset()
        assert resolve_endpoints_per_bucket(s3) == frozenset()
    warnings = [r for r in caplog.records if r.name == endpoint_parameters.__name__]
    assert len(warnings) == 1
    assert "boto/botocore#3528" in warnings[0].getMessage()

    before = ruleset_evaluations()
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"k/{i}", Body=b"x")
    assert ruleset_evaluations() - before == 5  # as botocore does: one evaluation per key
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 5


@pytest.mark.usefixtures("fresh_warning")
def test_a_resolver_that_already_leaves_some_out_loses_the_rest_quietly(
    s3: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # As a botocore with the upstream fix might hold them: Key gone, the others still there.
    resolver = s3._ruleset_resolver
    resolver._param_definitions = {
        name: spec for name, spec in resolver._param_definitions.items() if name != "Key"
    }
    with caplog.at_level(logging.WARNING, logger=endpoint_parameters.__name__):
        resolve_endpoints_per_bucket(s3)
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    assert not {"Key", "Prefix", "CopySource"} & set(resolver._param_definitions)
    assert {"Bucket", "Region", "Endpoint"} <= set(resolver._param_definitions)


@pytest.mark.usefixtures("fresh_warning")
def test_a_resolver_holding_names_the_ruleset_lacks_is_left_alone(
    s3: Any, caplog: pytest.LogCaptureFixture
) -> None:
    resolver = s3._ruleset_resolver
    held = dict(resolver._param_definitions)
    resolver._param_definitions = held | {"SomethingNew": held["Key"]}
    with caplog.at_level(logging.WARNING, logger=endpoint_parameters.__name__):
        assert resolve_endpoints_per_bucket(s3) == frozenset()
    assert len(caplog.records) == 1
    assert "Key" in resolver._param_definitions
