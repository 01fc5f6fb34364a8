"""Presigning: SigV4 and a host the client can reach, on AWS and on the local endpoint."""

from __future__ import annotations

import urllib.parse
import urllib.request
from typing import Any

import boto3

from api_lambda.clients import s3_client
from mediamill_core.settings import Settings, load_settings
from mediamill_testkit.client import presigned_post
from mediamill_testkit.endpoints import ruleset_evaluations


def test_aws_urls_are_sigv4_on_the_regional_virtual_host() -> None:
    s3 = s3_client(load_settings(region="eu-west-3"))  # presigning is local: no AWS call

    url = urllib.parse.urlsplit(
        s3.generate_presigned_url("get_object", Params={"Bucket": "mm-renditions", "Key": "k"})
    )
    assert url.netloc == "mm-renditions.s3.eu-west-3.amazonaws.com"
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url.query

    post = s3.generate_presigned_post("mm-originals", "originals/x")
    assert post["url"] == "https://mm-originals.s3.eu-west-3.amazonaws.com/"
    assert post["fields"]["x-amz-algorithm"] == "AWS4-HMAC-SHA256"


def test_local_urls_are_path_style_on_the_endpoint(settings: Settings) -> None:
    s3 = s3_client(settings)
    assert settings.endpoint_url is not None

    url = s3.generate_presigned_url("get_object", Params={"Bucket": "mm-renditions", "Key": "k"})
    assert url.startswith(f"{settings.endpoint_url}/mm-renditions/k?")
    post = s3.generate_presigned_post("mm-originals", "originals/x")
    assert post["url"] == f"{settings.endpoint_url}/mm-originals"


def test_aws_max_attempts_counts_every_try_as_the_worker_does() -> None:
    import http.server
    import threading

    import botocore.exceptions
    import pytest

    calls: list[str] = []

    class Failing(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            calls.append(self.path)
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        s3 = s3_client(load_settings(endpoint_url=endpoint, aws_max_attempts=3))
        with pytest.raises(botocore.exceptions.ClientError):
            s3.put_object(Bucket="b", Key="k", Body=b"x")
    finally:
        server.shutdown()
    assert len(calls) == 3


def test_urls_for_many_keys_resolve_the_endpoint_once(settings: Settings, s3: Any) -> None:
    signer = s3_client(settings)
    keys = [f"renditions/m{i:03d}/preview.jpg" for i in range(30)]
    for key in keys:
        s3.put_object(Bucket=settings.renditions_bucket, Key=key, Body=key.encode())

    before = ruleset_evaluations()
    urls = [
        signer.generate_presigned_url(
            "get_object", Params={"Bucket": settings.renditions_bucket, "Key": key}
        )
        for key in keys
    ]
    assert ruleset_evaluations() - before == 1
    for key, url in zip(keys, urls, strict=True):
        with urllib.request.urlopen(url) as answer:
            assert answer.read() == key.encode()


def test_upload_posts_carry_what_botocore_alone_would_sign(settings: Settings, s3: Any) -> None:
    signer = s3_client(settings)
    # The same client as botocore builds it, its endpoint parameters untouched.
    untouched = boto3.client(
        "s3",
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        config=signer.meta.config,
    )
    assert "Key" in untouched._ruleset_resolver._param_definitions
    assert "Key" not in signer._ruleset_resolver._param_definitions

    def post(client: Any) -> dict[str, Any]:
        made: dict[str, Any] = client.generate_presigned_post(
            Bucket=settings.originals_bucket,
            Key="originals/m1",
            Fields={"Content-Type": "image/jpeg"},
            Conditions=[{"Content-Type": "image/jpeg"}, ["content-length-range", 3, 3]],
        )
        return made

    # Signed within one second (the policy's clock), the two are the same, byte for byte.
    for _ in range(5):
        first, other, last = post(signer), post(untouched), post(signer)
        if first == last:
            break
    assert first == other

    assert presigned_post(first["url"], first["fields"], b"abc", "a.jpg") == 204
    got = s3.get_object(Bucket=settings.originals_bucket, Key="originals/m1")
    assert got["Body"].read() == b"abc"
