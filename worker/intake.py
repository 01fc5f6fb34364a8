"""Which lane fills a free job slot: fresh uploads first, backfill with what they leave.

Each time the worker has free slots it asks the media queue first, and the backfill queue only
when that receive came back empty. A fresh upload therefore waits for a slot to free, never for
the backfill to drain, however deep it is: the worker holds no message it has no slot for, and
every freed slot is offered to the media queue before the backfill sees it.

The waits are what keep that promise cheap:

- The media queue is long-polled for ``MEDIAMILL_RECEIVE_WAIT_SECONDS`` while the backfill is
  idle, as with one lane. While the backfill has work, for one second only: an empty answer
  then hands the free slots to the backfill soon. One second, not a short poll (0): a short
  poll asks only some of SQS's servers and can come back empty while fresh uploads wait.
- The backfill queue is polled for one second, so a fresh upload that arrives meanwhile waits
  that long at most before the next media receive can see it.
- ``MEDIAMILL_BACKFILL_RESERVED_SLOTS`` slots may go to the backfill even while the media queue
  is busy, so that it is never starved for good: those are offered to the backfill first, with
  a short poll, which costs a fresh upload no wait.
"""

from __future__ import annotations

import anyio

from worker.queue import BACKFILL, MEDIA, InFlight, MediaQueue

# Seconds: the media queue's poll while the backfill has work, and the backfill queue's poll.
LANE_SWITCH_WAIT = 1


class Intake:
    """Receives for the free slots of one worker, lane by lane."""

    def __init__(self, queue: MediaQueue, *, reserved_slots: int) -> None:
        self._queue = queue
        self._reserved = reserved_slots if BACKFILL in queue.lanes else 0
        # Whether the backfill's last receive brought work; unknown at start, so look soon.
        self.backfill_busy = BACKFILL in queue.lanes

    async def take(self, free: int, stop: anyio.Event) -> list[InFlight]:
        """Up to ``free`` messages; what arrives once ``stop`` is set is the caller's to release."""
        taken: list[InFlight] = []
        owed = min(free, self._reserved - self._queue.in_flight_on(BACKFILL))
        if owed > 0:
            reserved = await self._queue.receive(owed, stop, lane=BACKFILL, wait_seconds=0)
            # A short poll's empty answer proves nothing; one with work does.
            self.backfill_busy = self.backfill_busy or bool(reserved)
            taken += reserved
            free -= len(reserved)
            if free == 0 or stop.is_set():
                return taken
        wait = LANE_SWITCH_WAIT if self.backfill_busy else None
        fresh = await self._queue.receive(free, stop, lane=MEDIA, wait_seconds=wait)
        taken += fresh
        if fresh or stop.is_set() or BACKFILL not in self._queue.lanes:
            return taken
        # The media queue had nothing visible: the free slots are the backfill's.
        backfill = await self._queue.receive(
            free, stop, lane=BACKFILL, wait_seconds=LANE_SWITCH_WAIT
        )
        self.backfill_busy = bool(backfill)
        return taken + backfill
