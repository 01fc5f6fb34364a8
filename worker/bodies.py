"""Message bodies that are not upload events, each kind with a handler registered here.

The consumer reads every body as an upload event first (worker.events): an S3 or SNS
notification is an upload on either lane, handled the same way. A body that is not one is
offered to the handlers in turn, and the first that takes it gives the message its verdict;
only a body that no handler takes is malformed (logged, counted and left for the dead-letter
queue). A reprocess request (worker.reprocess) is such a body.

A handler is made once per worker, when the worker starts, by a factory given the worker's
shared parts (:class:`HandlerContext`). ``BUILT_IN`` lists the factories every worker uses;
``Worker(handlers=...)`` replaces the list. A handler's verdict is acted on like an upload's:
done deletes the message, retry and error put it off, requeue sends it on as a copy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from structlog.typing import FilteringBoundLogger

from mediamill_core.settings import Settings
from worker.aws import AwsClients
from worker.jobs import UploadProcessor
from worker.notify import Outbox
from worker.pipeline import Pipeline
from worker.reprocess.job import ReprocessJobs
from worker.reprocess.writes import ReprocessWrites
from worker.spool import Spool
from worker.store import MediaStore
from worker.verdicts import Attempt, Result


class BodyHandler(Protocol):
    """One kind of message body that is not an upload event."""

    async def offer(self, body: str, attempt: Attempt, log: FilteringBoundLogger) -> Result | None:
        """The verdict on a body of this handler's kind; None when it is not of that kind.

        Raises worker.events.MalformedMessage for a body of its kind that cannot be acted on:
        it is then left for the DLQ, with the reason logged.
        """
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
    # How long an event's sender holds it (the sweep waits longer before it sends instead).
    event_lock_seconds: float


HandlerFactory = Callable[[HandlerContext], BodyHandler]


def reprocess_requests(context: HandlerContext) -> BodyHandler:
    """`mediamill reprocess`'s requests: run one stage on a READY item again."""
    settings = context.settings
    return ReprocessJobs(
        s3=context.aws.s3,
        writes=ReprocessWrites(
            context.aws.dynamodb, settings.table, event_lock_seconds=context.event_lock_seconds
        ),
        outbox=context.outbox,
        pipeline=context.pipeline,
        originals_bucket=settings.originals_bucket,
        renditions_bucket=settings.renditions_bucket,
        spool=context.spool,
        solo=context.processor.solo,
        lease_seconds=settings.visibility_timeout,
        event_grace_seconds=settings.event_grace_seconds,
        spool_wait_seconds=settings.spool_wait_seconds,
    )


# The kinds of body every worker handles besides upload events.
BUILT_IN: tuple[HandlerFactory, ...] = (reprocess_requests,)


class BodyHandlers:
    """The handlers of one worker, asked in order."""

    def __init__(self, handlers: Sequence[BodyHandler]) -> None:
        self._handlers = tuple(handlers)

    async def offer(self, body: str, attempt: Attempt, log: FilteringBoundLogger) -> Result | None:
        """The first verdict a handler gives the body; None: no handler's kind."""
        for handler in self._handlers:
            verdict = await handler.offer(body, attempt, log)
            if verdict is not None:
                return verdict
        return None
