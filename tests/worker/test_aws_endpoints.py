"""The worker's clients resolve S3's endpoint once per bucket, not once per object key."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from mediamill_core.settings import load_settings
from mediamill_testkit.endpoints import ruleset_evaluations
from worker.aws import open_clients


async def test_renditions_under_many_keys_land_with_one_evaluation_per_bucket(
    aws_endpoint: str,
) -> None:
    settings = load_settings(endpoint_url=aws_endpoint, region="us-east-1")
    keys = [f"renditions/m{i:03d}/preview.jpg" for i in range(40)]
    async with open_clients(settings) as aws:
        bucket = f"ep-{uuid.uuid4().hex[:12]}"
        await aws.s3.create_bucket(Bucket=bucket)

        before = ruleset_evaluations()
        await asyncio.gather(
            *(aws.s3.put_object(Bucket=bucket, Key=k, Body=k.encode()) for k in keys)
        )
        assert ruleset_evaluations() - before == 1

        listed = await aws.s3.list_objects_v2(Bucket=bucket, Prefix="renditions/")
        assert sorted(o["Key"] for o in listed["Contents"]) == keys
        got = await aws.s3.get_object(Bucket=bucket, Key=keys[17])
        assert await got["Body"].read() == keys[17].encode()


def test_operator_commands_head_object_after_object_with_one_evaluation(
    aws_endpoint: str,
) -> None:
    from worker.ops.lanes import ops_clients

    s3 = ops_clients(load_settings(endpoint_url=aws_endpoint, region="us-east-1")).s3
    bucket = f"ep-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    keys = [f"originals/m{i:03d}" for i in range(20)]

    before = ruleset_evaluations()
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    sizes = [s3.head_object(Bucket=bucket, Key=key)["ContentLength"] for key in keys]
    # Object calls on one bucket share one set of endpoint parameters: one evaluation for all.
    assert ruleset_evaluations() - before == 1
    assert sizes == [1] * len(keys)


async def test_over_plain_http_an_uploads_body_is_left_out_of_its_signature_as_over_https(
    aws_endpoint: str,
) -> None:
    settings = load_settings(endpoint_url=aws_endpoint, region="us-east-1")
    sent: list[bytes] = []

    def signed_body(request: Any, **_: Any) -> None:
        sent.append(request.headers["X-Amz-Content-SHA256"])

    async with open_clients(settings) as aws:
        bucket = f"ep-{uuid.uuid4().hex[:12]}"
        await aws.s3.create_bucket(Bucket=bucket)
        aws.s3.meta.events.register("before-send.s3.PutObject", signed_body)
        body = b"\xff\xd8\xff" + bytes(range(256)) * 64
        await aws.s3.put_object(Bucket=bucket, Key="m/preview.jpg", Body=body)
        got = await aws.s3.get_object(Bucket=bucket, Key="m/preview.jpg")
        assert await got["Body"].read() == body
    assert sent == [b"UNSIGNED-PAYLOAD"]


def test_on_aws_the_s3_config_is_botocores_own() -> None:
    from worker.aws import client_config

    assert client_config(load_settings(endpoint_url=None)).s3 == {"addressing_style": "auto"}
    https = client_config(load_settings(endpoint_url="https://s3.example.test")).s3
    assert https == {"addressing_style": "path"}
