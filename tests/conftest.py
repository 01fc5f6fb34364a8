"""Shared fixtures: an isolated environment and a moto server reached over real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import structlog
from botocore.config import Config

from mediamill_core.settings import Settings, load_settings
from worker.dev.devstack import EmbeddedAws, Stack, StackNames, provision, use_dev_credentials

TESTS = Path(__file__).parent
SUPPORT = TESTS / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS_* or MEDIAMILL_* from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "MEDIAMILL_")):
            monkeypatch.delenv(name)
    use_dev_credentials()
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture(autouse=True)
def _structlog_restored() -> Iterator[None]:
    """A test that configures structlog (a level filter, say) leaves it as it found it: later
    tests in the same process read the logs with ``capture_logs``."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    server = EmbeddedAws()
    endpoint = server.start()
    yield endpoint
    server.stop()


@pytest.fixture
def stack(aws_endpoint: str) -> Stack:
    """Freshly provisioned, randomly named resources for one test."""
    return provision(
        aws_endpoint, StackNames.random("t"), visibility_timeout=30, max_receive_count=3
    )


@pytest.fixture
def stack_env(stack: Stack, tmp_path: Path) -> dict[str, str]:
    """MEDIAMILL_* variables for a worker or API pointed at the test stack, fast to poll."""
    env = stack.settings_env()
    env.update(
        {
            "MEDIAMILL_RECEIVE_WAIT_SECONDS": "1",
            "MEDIAMILL_METRICS_PORT": "0",
            "MEDIAMILL_RETRY_BASE_SECONDS": "1",
            "MEDIAMILL_RETRY_MAX_SECONDS": "2",
            "MEDIAMILL_VISIBILITY_TIMEOUT": "30",
            "MEDIAMILL_SPOOL_DIR": str(tmp_path / "spool"),
            "MEDIAMILL_LOG_FORMAT": "json",
        }
    )
    return env


@pytest.fixture
def settings(stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in stack_env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def sync_client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture
def s3(aws_endpoint: str) -> Any:
    return sync_client("s3", aws_endpoint)


@pytest.fixture
def sqs(aws_endpoint: str) -> Any:
    return sync_client("sqs", aws_endpoint)


@pytest.fixture
def dynamodb(aws_endpoint: str) -> Any:
    return sync_client("dynamodb", aws_endpoint)


@pytest.fixture
def sns(aws_endpoint: str) -> Any:
    return sync_client("sns", aws_endpoint)


@pytest.fixture
def media_events(stack: Stack, sqs: Any, sns: Any) -> str:
    """A queue subscribed to the media topic, to read what the worker announced."""
    url = sqs.create_queue(QueueName=f"{stack.names.prefix}-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=stack.media_topic_arn,
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    return str(url)


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount tmpfs file systems of our own under ``tmp_path``, given mount options: a disk that
    fills up (``size=64k``) or refuses writes (``ro``) for real."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        point = tmp_path / f"tmpfs-{len(mounted)}"
        point.mkdir()
        try:
            run = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                capture_output=True,
                text=True,
                check=False,
            )
        except FileNotFoundError:
            pytest.skip("no mount command here: a tmpfs of our own cannot be made")
        if run.returncode != 0:
            pytest.skip(f"mounting a tmpfs needs root or CAP_SYS_ADMIN: {run.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", str(point)], check=True)
