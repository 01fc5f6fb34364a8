"""What a job tells the consumer about its message: delete it, retry later, or leave it."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from worker.queue import MEDIA, LaneName


class Verdict(enum.Enum):
    DONE = "done"  # finished, a duplicate, or nothing left to do: delete the message
    RETRY = "retry"  # transient trouble: try again after a backoff
    ERROR = "error"  # not ours to fix here (a bug, a foreign object): leave it for the DLQ
    # Not started, and no try spent: hand a copy to another worker (see worker.solo).
    REQUEUE = "requeue"


@dataclass(frozen=True, slots=True)
class Result:
    verdict: Verdict
    retry_after: float | None = None


DONE = Result(Verdict.DONE)
# Done, but not by a finishing write: the claim's lease is still to be given up.
SUPERSEDED = Result(Verdict.DONE)
RETRY = Result(Verdict.RETRY)
ERROR = Result(Verdict.ERROR)
REQUEUE = Result(Verdict.REQUEUE)


@dataclass(frozen=True, slots=True)
class Attempt:
    """Which delivery of which message this is, and the lane it came by."""

    number: int
    of: int
    message_id: str = "?"
    lane: LaneName = MEDIA

    @property
    def last(self) -> bool:
        return self.number >= self.of
