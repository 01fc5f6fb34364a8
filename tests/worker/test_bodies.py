"""Bodies that are not upload events reach the handler that accepts them; the rest are malformed."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest
import structlog
from prometheus_client import REGISTRY
from structlog.typing import FilteringBoundLogger

from mediamill_core.settings import Settings
from mediamill_testkit.client import queue_counts
from stages.probe.stage import ProbeStage
from worker.bodies import BodyHandlers, HandlerContext
from worker.consumer import Worker
from worker.dev.devstack import Stack
from worker.events import MalformedMessage
from worker.publish import PublishStage
from worker.registry import LoadedStage, StageRegistry, instantiate
from worker.verdicts import DONE, RETRY, Attempt, Result

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Echoes:
    """Handles ``{"request": "echo", "say": ...}``: records what it was asked, and when."""

    heard: ClassVar[list[tuple[str, str, int]]] = []
    contexts: ClassVar[list[HandlerContext]] = []

    def __init__(self, context: HandlerContext) -> None:
        Echoes.contexts.append(context)

    async def offer(self, body: str, attempt: Attempt, log: FilteringBoundLogger) -> Result | None:
        try:
            document = json.loads(body)
        except ValueError:
            return None
        if not isinstance(document, dict) or document.get("request") != "echo":
            return None
        if not isinstance(document.get("say"), str):
            raise MalformedMessage("an echo request says nothing")
        Echoes.heard.append((document["say"], attempt.lane, attempt.number))
        return DONE


def registry() -> StageRegistry:
    return StageRegistry(
        [LoadedStage(stage=instantiate(cls, None, cls.name)) for cls in (ProbeStage, PublishStage)]
    )


def dead_letters(sqs: Any, url: str) -> list[str]:
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    return sorted(message["Body"] for message in got.get("Messages", []))


def malformed() -> float:
    return REGISTRY.get_sample_value("mediamill_malformed_messages_total") or 0.0


async def test_a_body_that_is_no_upload_event_goes_to_the_handler_that_accepts_it(
    settings: Settings, stack: Stack, sqs: Any
) -> None:
    Echoes.heard.clear()
    Echoes.contexts.clear()
    asked = json.dumps({"request": "echo", "say": "hello"})
    silent = json.dumps({"request": "echo"})  # the handler's kind, but unusable
    unknown = json.dumps({"request": "shout", "say": "hello"})  # nobody's kind
    for body in (asked, silent, unknown):
        sqs.send_message(QueueUrl=stack.backfill_queue_url, MessageBody=body)
    before = malformed()

    await Worker(settings, registry(), burst=True, handlers=[Echoes]).run()

    # Done: deleted after one try, and the handler knew the lane it came by.
    assert Echoes.heard == [("hello", "backfill", 1)]
    [context] = Echoes.contexts
    assert context.settings is settings
    # The other two are malformed: left on every receive until SQS moved them to the DLQ.
    assert dead_letters(sqs, stack.backfill_dlq_url) == sorted([silent, unknown])
    assert malformed() == before + 2 * stack.max_receive_count
    assert queue_counts(sqs, stack.backfill_queue_url) == (0, 0)


async def test_without_a_handler_every_such_body_is_malformed(
    settings: Settings, stack: Stack, sqs: Any
) -> None:
    asked = json.dumps({"request": "echo", "say": "hello"})
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody=asked)

    await Worker(settings, registry(), burst=True, handlers=()).run()

    assert dead_letters(sqs, stack.dlq_url) == [asked]


async def test_handlers_are_asked_in_order_until_one_takes_the_body() -> None:
    asked: list[str] = []

    class Takes:
        def __init__(self, kind: str) -> None:
            self.kind = kind

        async def offer(
            self, body: str, attempt: Attempt, log: FilteringBoundLogger
        ) -> Result | None:
            asked.append(self.kind)
            return RETRY if body in (self.kind, "either") else None

    handlers = BodyHandlers([Takes("a"), Takes("b")])
    attempt = Attempt(1, 3, "m-1", "backfill")
    log = structlog.get_logger()
    assert await handlers.offer("b", attempt, log) is RETRY
    assert asked == ["a", "b"]
    asked.clear()
    assert await handlers.offer("either", attempt, log) is RETRY
    assert asked == ["a"]  # the first that takes it decides
    assert await handlers.offer("c", attempt, log) is None
    assert await BodyHandlers([]).offer("a", attempt, log) is None
