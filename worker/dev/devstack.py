"""The embedded AWS stack: moto's server on loopback plus the resources the template declares.

``mediamill dev``, ``mediamill demo`` and the test-suite all provision through :func:`provision`,
which reads deploy/ecs/template.yaml: local runs exercise the same buckets, notifications,
topics, queues, redrive policy and indexes as production, because they are made from its text.
"""

from __future__ import annotations

import functools
import os
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from worker.dev.evaluation import Evaluation, Made, Pseudo
from worker.dev.resources import Services, make_served, physical_name, stand_in
from worker.dev.template import ParameterValue, load_template

if TYPE_CHECKING:
    from worker.dev.moto_http import MotoServer

DEV_REGION = "us-east-1"
# moto accepts any credentials; these keep a developer's real ones out of the emulation.
DEV_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "mediamill-dev",
    "AWS_SECRET_ACCESS_KEY": "mediamill-dev-secret",
}
# moto's account, unless MOTO_ACCOUNT_ID says otherwise; provision() asks the emulation.
EMULATED_ACCOUNT_ID = "123456789012"


@dataclass(frozen=True, slots=True)
class StackNames:
    """What the template names the stack's resources, for one stack name (``prefix``: random per
    test, fixed for `mediamill dev`), in one account and region."""

    prefix: str
    account_id: str = EMULATED_ACCOUNT_ID
    region: str = DEV_REGION

    @classmethod
    def random(cls, base: str = "mm") -> StackNames:
        return cls(f"{base}-{secrets.token_hex(4)}")

    @property
    def originals_bucket(self) -> str:
        return self._name("OriginalsBucket")

    @property
    def renditions_bucket(self) -> str:
        return self._name("RenditionsBucket")

    @property
    def table(self) -> str:
        return self._name("MediaTable")

    @property
    def queue(self) -> str:
        return self._name("MediaQueue")

    @property
    def dlq(self) -> str:
        return self._name("MediaDeadLetterQueue")

    @property
    def backfill_queue(self) -> str:
        return self._name("BackfillQueue")

    @property
    def backfill_dlq(self) -> str:
        return self._name("BackfillDeadLetterQueue")

    @property
    def uploads_topic(self) -> str:
        return self._name("UploadsTopic")

    @property
    def media_topic(self) -> str:
        return self._name("MediaEventsTopic")

    def evaluation(self, parameters: Mapping[str, ParameterValue] | None = None) -> Evaluation:
        """The dev template evaluated for this stack, with these parameter values."""
        pseudo = Pseudo(stack_name=self.prefix, account_id=self.account_id, region=self.region)
        return Evaluation(load_template(), pseudo, parameters, stand_in=stand_in)

    def _name(self, logical_id: str) -> str:
        evaluation = self.evaluation()
        return physical_name(evaluation, evaluation.template.resources[logical_id])


@dataclass(frozen=True, slots=True)
class Stack:
    names: StackNames
    endpoint_url: str
    region: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    backfill_queue_url: str
    backfill_dlq_url: str
    uploads_topic_arn: str
    media_topic_arn: str
    max_receive_count: int
    # Every served resource by logical id, as it answers Ref and Fn::GetAtt, and the template
    # parameters given (the others kept their defaults).
    resources: Mapping[str, Made] = field(default_factory=dict)
    parameters: Mapping[str, ParameterValue] = field(default_factory=dict)

    def settings_env(self) -> dict[str, str]:
        """The MEDIAMILL_* variables that point the worker and the API at this stack."""
        return {
            "MEDIAMILL_ENDPOINT_URL": self.endpoint_url,
            "MEDIAMILL_REGION": self.region,
            "MEDIAMILL_ORIGINALS_BUCKET": self.names.originals_bucket,
            "MEDIAMILL_RENDITIONS_BUCKET": self.names.renditions_bucket,
            "MEDIAMILL_TABLE": self.names.table,
            "MEDIAMILL_QUEUE_URL": self.queue_url,
            "MEDIAMILL_BACKFILL_QUEUE_URL": self.backfill_queue_url,
            "MEDIAMILL_MEDIA_TOPIC_ARN": self.media_topic_arn,
            "MEDIAMILL_MAX_RECEIVE_COUNT": str(self.max_receive_count),
        }

    def describe(self) -> dict[str, Any]:
        return {
            "originals_bucket": self.names.originals_bucket,
            "renditions_bucket": self.names.renditions_bucket,
            "table": self.names.table,
            "queue_url": self.queue_url,
            "dlq_url": self.dlq_url,
            "backfill_queue_url": self.backfill_queue_url,
            "backfill_dlq_url": self.backfill_dlq_url,
            "uploads_topic_arn": self.uploads_topic_arn,
            "media_topic_arn": self.media_topic_arn,
        }


@functools.cache
def _client(service: str, endpoint_url: str, region: str) -> Any:
    # One client per service and endpoint for the process: every test provisions a stack.
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=DEV_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DEV_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}),
    )


@functools.cache
def _account_id(endpoint_url: str, region: str) -> str:
    return str(_client("sts", endpoint_url, region).get_caller_identity()["Account"])


def provision(
    endpoint_url: str,
    names: StackNames,
    *,
    region: str = DEV_REGION,
    visibility_timeout: int | None = None,
    max_receive_count: int | None = None,
    cors_origins: Sequence[str] | None = None,
) -> Stack:
    """Make the stack's resources on the emulation from deploy/ecs/template.yaml.

    The keyword arguments are the template's VisibilityTimeout, MaxReceiveCount and
    UploadOrigins parameters; None keeps the template's default.
    """
    names = StackNames(names.prefix, _account_id(endpoint_url, region), region)
    given = {
        "VisibilityTimeout": visibility_timeout,
        "MaxReceiveCount": max_receive_count,
        "UploadOrigins": None if cors_origins is None else list(cors_origins),
    }
    parameters = {k: v for k, v in given.items() if v is not None}
    evaluation = names.evaluation(parameters)
    services = Services(
        s3=_client("s3", endpoint_url, region),
        sns=_client("sns", endpoint_url, region),
        sqs=_client("sqs", endpoint_url, region),
        dynamodb=_client("dynamodb", endpoint_url, region),
    )
    made = make_served(evaluation, services)
    queue, dlq = made["MediaQueue"], made["MediaDeadLetterQueue"]
    return Stack(
        names=names,
        endpoint_url=endpoint_url,
        region=region,
        queue_url=queue.ref,
        queue_arn=queue.attributes["Arn"],
        dlq_url=dlq.ref,
        backfill_queue_url=made["BackfillQueue"].ref,
        backfill_dlq_url=made["BackfillDeadLetterQueue"].ref,
        uploads_topic_arn=made["UploadsTopic"].ref,
        media_topic_arn=made["MediaEventsTopic"].ref,
        max_receive_count=int(evaluation.ref("MaxReceiveCount", "provision")),
        resources=made,
        parameters=parameters,
    )


class EmbeddedAws:
    """moto's server on a free loopback port, on threads of this process (HTTP/1.1, kept alive)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host, self._port = host, port
        self._server: MotoServer | None = None
        self.endpoint_url = ""

    def start(self) -> str:
        from worker.dev.moto_http import MotoServer

        self._server = MotoServer(self._host, self._port, moto_app())
        self.endpoint_url = self._server.start()
        return self.endpoint_url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()  # and the kept-alive connections with it


def moto_app() -> Any:
    """moto's WSGI app (every service, routed by host and signature) with atomic DynamoDB."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    return AtomicDynamoDB(DomainDispatcherApplication(create_backend_app))


class AtomicDynamoDB:
    """Serialises moto's DynamoDB requests, as DynamoDB itself makes each item write atomic.

    moto serves requests on threads and checks a condition and applies the update as two
    steps, so two concurrent conditional writes to one item could both pass: real DynamoDB
    never lets that happen, and our claims rely on it.
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB_"):
            return self._app(environ, start_response)
        with self._lock:
            # The body is produced inside the lock: moto has done all its work by then.
            return list(self._app(environ, start_response))


def use_dev_credentials() -> None:
    """Point this process's default credential chain at the emulation's fake keys."""
    os.environ.update(DEV_CREDENTIALS)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.setdefault("AWS_DEFAULT_REGION", DEV_REGION)
