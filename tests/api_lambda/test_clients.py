"""Presigning: SigV4 and a host the client can reach, on AWS and on the local endpoint."""

from __future__ import annotations

import urllib.parse

from api_lambda.clients import s3_client
from mediamill_core.settings import Settings, load_settings


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
