"""Bodies that are not upload events reach the handler that accepts them; the rest are malformed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
from prometheus_client import REGISTRY
from structlog.typing import FilteringBoundLogger

from mediamill_core.settings import Settings
from mediamill_testkit.client import queue_counts
from stages.probe.stage import ProbeStage
from worker.bodies import BodyHandler, BodyHandlers, HandlerContext
from worker.consumer import Worker
from worker.dev.devstack import Stack
from worker.events import MalformedMessage
from worker.publish import PublishStage
from worker.registry import LoadedStage, StageRegistry, instantiate
from worker.verdicts import DONE, Attempt, Result

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

    def accepts(self, document: Mapping[str, Any]) -> bool:
        return document.get("request") == "echo"

    async def handle(
        self, document: Mapping[str, Any], attempt: Attempt, log: FilteringBoundLogger
    ) -> Result:
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


def test_handlers_are_asked_in_order_and_only_with_json_objects() -> None:
    class Takes:
        def __init__(self, kind: str) -> None:
            self.kind = kind

        def accepts(self, document: Mapping[str, Any]) -> bool:
            return document.get("request") in (self.kind, "either")

        async def handle(
            self, document: Mapping[str, Any], attempt: Attempt, log: FilteringBoundLogger
        ) -> Result:
            return DONE

    first: BodyHandler = Takes("a")
    second: BodyHandler = Takes("b")
    handlers = BodyHandlers([first, second])
    assert handlers.find('{"request": "b"}') == (second, {"request": "b"})
    assert handlers.find('{"request": "either"}') == (first, {"request": "either"})
    for body in ('{"request": "c"}', "[1]", "not json", "", '"text"', "[" * 100_000):
        assert handlers.find(body) is None, body[:20]
