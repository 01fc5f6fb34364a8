"""Message bodies that are not upload events, each kind with a handler registered here.

The consumer reads every body as an upload event first (worker.events): an S3 or SNS
notification is an upload on either lane, handled the same way. A body that is not one is
offered to the handlers in turn, and the first that accepts it runs it; only a body that no
handler accepts is malformed (logged, counted and left for the dead-letter queue).

A handler is made once per worker, when the worker starts, by a factory given the worker's
shared parts (:class:`HandlerContext`). ``BUILT_IN`` lists the factories every worker uses;
``Worker(handlers=...)`` replaces the list. A handler's verdict is acted on like an upload's:
done deletes the message, retry and error put it off, requeue sends it on as a copy.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from structlog.typing import FilteringBoundLogger

from mediamill_core.settings import Settings
from worker.aws import AwsClients
from worker.jobs import UploadProcessor
from worker.notify import Outbox
from worker.pipeline import Pipeline
from worker.spool import Spool
from worker.store import MediaStore
from worker.verdicts import Attempt, Result


class BodyHandler(Protocol):
    """One kind of message body that is not an upload event."""

    def accepts(self, document: Mapping[str, Any]) -> bool:
        """Whether this JSON object is this handler's kind; cheap, no I/O."""
        ...

    async def handle(
        self, document: Mapping[str, Any], attempt: Attempt, log: FilteringBoundLogger
    ) -> Result:
        """Do what the body asks. Raise worker.events.MalformedMessage for a body of this kind
        that cannot be acted on (it is then left for the DLQ, with the reason logged)."""
        ...


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """What a worker shares with every job, for a factory to build its handler from."""

    settings: Settings
    aws: AwsClients
    store: MediaStore
    outbox: Outbox
    pipeline: Pipeline
    processor: UploadProcessor
    spool: Spool
    log: FilteringBoundLogger


HandlerFactory = Callable[[HandlerContext], BodyHandler]

# The kinds of body every worker handles besides upload events.
BUILT_IN: tuple[HandlerFactory, ...] = ()


class BodyHandlers:
    """The handlers of one worker, asked in order."""

    def __init__(self, handlers: Sequence[BodyHandler]) -> None:
        self._handlers = tuple(handlers)

    def find(self, body: str) -> tuple[BodyHandler, dict[str, Any]] | None:
        """The handler that accepts this body, with the body as JSON; None: nobody's."""
        if not self._handlers:
            return None
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            return None
        if not isinstance(document, dict):
            return None
        for handler in self._handlers:
            if handler.accepts(document):
                return handler, document
        return None
