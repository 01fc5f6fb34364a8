"""Stopping the in-process emulation does not wait out a long poll its client abandoned."""

from __future__ import annotations

import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ReadTimeoutError

from worker.dev.devstack import DEV_CREDENTIALS, EmbeddedAws


def test_stop_is_prompt_while_an_abandoned_long_poll_still_waits() -> None:
    aws = EmbeddedAws()
    endpoint_url = aws.start()
    try:
        # A worker cancelled mid-poll leaves moto's thread waiting out the 20 s: moto's
        # ReceiveMessage does not notice its client has gone.
        sqs = boto3.client(
            "sqs",
            endpoint_url=endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=DEV_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DEV_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(read_timeout=1, retries={"max_attempts": 1}),
        )
        url = sqs.create_queue(QueueName="abandoned")["QueueUrl"]
        with pytest.raises(ReadTimeoutError):
            sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20)
        started = time.monotonic()
    finally:
        aws.stop()
    assert time.monotonic() - started < 5
