"""Which lane fills a free job slot: fresh uploads first, backfill with what they leave.

A freed slot is offered to the media queue first; the backfill queue gets slots only while the
media queue has nothing visible, which the media receive itself says: one that comes back
empty, or one still waiting (SQS answers a long poll at once when a message is there). So a
fresh upload waits for a slot to free, never for the backfill to drain, however deep it is.

How the receives go, in one worker:

- With one lane, or while the backfill is idle, the media queue is long-polled for all free
  slots (``MEDIAMILL_RECEIVE_WAIT_SECONDS``), as a one-lane worker does; after an empty
  answer the backfill queue is asked once, for a second.
- While the backfill has work, a media receive for one slot (a second's long poll) runs beside
  the backfill's receives and jobs: a fresh upload that arrives is taken at once into that
  slot. When it comes back empty, the backfill has the next free slots; the media queue takes
  the one after. While fresh uploads keep coming, every free slot goes to them.
- Never a short poll (0 s) for fresh uploads: it asks only some of SQS's servers, and can come
  back empty while one waits. A receive under way is never cancelled (what it brings could
  stay invisible until its timeout): a stopping worker lets it end and hands back its catch.
- ``MEDIAMILL_BACKFILL_RESERVED_SLOTS``: up to that many slots go to the backfill even while
  fresh uploads keep the media queue busy, so it is never starved for good. They are offered
  first, with a short poll that costs a fresh upload no wait.

The worker never holds a message it has no slot for: a receive asks for at most the slots that
are free and not promised to a receive already under way.

A receive for fewer than ``batch`` slots waits while the CPU threads have a round of work queued
(as many jobs waiting for one as there are threads): the slot would only queue for a thread too,
and a receive per upload costs a call per upload. Once the queue for the CPU is shorter, or
enough slots are free, the receive goes; the consumer looks again every few hundredths of a
second meanwhile (``deferred``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import anyio
from anyio.abc import TaskGroup

from worker.queue import BACKFILL, MEDIA, InFlight, MediaQueue

# Seconds: a media receive while the backfill has work, and the backfill's own receive. The
# shortest long poll SQS has: a fresh upload arriving meanwhile waits that long at most.
LANE_SWITCH_WAIT = 1
_MAX_RECEIVE = 10  # SQS's limit per ReceiveMessage
# How soon the consumer looks again at a receive held back for more free slots.
DEFERRED_LOOK_SECONDS = 0.05
_IDLE_LOOK_SECONDS = 1.0  # otherwise: a freed slot or a returning receive wakes it sooner


def receive_batch(concurrency: int) -> int:
    """Free slots a receive waits for while the CPU threads have work queued: a quarter of the
    job slots (2 of the default 8), so no slot waits long for a batch."""
    return max(1, concurrency // 4)


class Intake:
    """Offers one worker's free job slots to its lanes, the media queue first."""

    def __init__(
        self,
        queue: MediaQueue,
        *,
        reserved_slots: int,
        start: Callable[[list[InFlight]], None],
        wake: Callable[[], None],
        receiving: Callable[[], AbstractContextManager[None]] = nullcontext,
        batch: int = 1,
        cpu_threads: int = 1,
        cpu_queue: Callable[[], int] = lambda: 0,
    ) -> None:
        self._queue = queue
        self._has_backfill = BACKFILL in queue.lanes
        self._reserved = reserved_slots if self._has_backfill else 0
        self._start = start  # runs received messages as jobs (they take their slots)
        self._wake = wake  # tells the consumer loop to offer the slots again
        # Marks a receive under way until what it brought is started (worker.solo: a suspect
        # waits for it, so a message it brings never shares the suspect's worker).
        self._receiving = receiving
        self._claimed = 0  # free slots a media receive under way may fill
        self._media_pending = False
        self._media_empty = False  # the last media receive brought nothing
        self._backfill_turn = False  # ... so the next free slots are the backfill's
        # Whether the backfill's last receive brought work; unknown at start, so look soon.
        self.backfill_busy = self._has_backfill
        self._batch = batch
        self._cpu_threads = cpu_threads
        self._cpu_queue = cpu_queue  # jobs waiting for a CPU thread now
        # The last fill held back a media receive for more free slots: look again soon.
        self.deferred = False

    @property
    def look_again_in(self) -> float:
        """Seconds the consumer waits for a freed slot before it offers the slots again: soon
        after a held-back receive (the CPU queue shortens without a slot freeing), else 1 s."""
        return DEFERRED_LOOK_SECONDS if self.deferred else _IDLE_LOOK_SECONDS

    @property
    def idle(self) -> bool:
        """No receive under way, and the last ones found both lanes empty (burst mode's end)."""
        return not self._media_pending and self._media_empty and not self.backfill_busy

    async def fill(self, free: int, stop: anyio.Event, group: TaskGroup) -> bool:
        """Offer ``free`` slots to the lanes once; False when nothing changed (wait, then)."""
        free -= self._claimed
        progressed = False
        self.deferred = False
        owed = min(free, self._reserved - self._queue.in_flight_on(BACKFILL))
        if owed > 0:
            got = await self._receive_backfill(owed, stop, wait=0)
            # A short poll's empty answer proves nothing; one with work does.
            self.backfill_busy = self.backfill_busy or bool(got)
            free -= len(got)
            progressed = bool(got)
        if self._backfill_turn and free > 0 and not stop.is_set():
            self._backfill_turn = False
            got = await self._receive_backfill(free, stop, wait=LANE_SWITCH_WAIT)
            self.backfill_busy = bool(got)
            free -= len(got)
            progressed = True
        if not self._media_pending and free > 0 and not stop.is_set():
            # While the backfill has work and no fresh upload waits, one slot watches for one.
            watch = self._media_empty and self.backfill_busy
            count = 1 if watch else min(_MAX_RECEIVE, free)
            if not watch and count < self._batch and self._cpu_queue() >= self._cpu_threads:
                self.deferred = True
                return progressed
            wait = LANE_SWITCH_WAIT if self.backfill_busy else None
            self._claimed += count
            self._media_pending = True
            group.start_soon(self._receive_media, count, wait, stop)
            free -= count
            progressed = True
        if self._media_pending and self._media_empty and self.backfill_busy and free > 0:
            # Beside a media receive that finds nothing: the slots it does not hold.
            got = await self._receive_backfill(free, stop, wait=LANE_SWITCH_WAIT)
            self.backfill_busy = bool(got)
            progressed = progressed or bool(got)
        return progressed

    async def _receive_media(self, count: int, wait: int | None, stop: anyio.Event) -> None:
        got: list[InFlight] = []
        with self._receiving():
            try:
                got = await self._queue.receive(count, stop, lane=MEDIA, wait_seconds=wait)
            finally:
                # In one step with the start below: the slots pass from the receive to its jobs.
                self._claimed -= count
                self._media_pending = False
            self._media_empty = not got
            self._backfill_turn = self._has_backfill and not got
            await self._deliver(got, stop)
        self._wake()

    async def _receive_backfill(
        self, count: int, stop: anyio.Event, *, wait: int
    ) -> list[InFlight]:
        with self._receiving():
            got = await self._queue.receive(
                min(_MAX_RECEIVE, count), stop, lane=BACKFILL, wait_seconds=wait
            )
            await self._deliver(got, stop)
        return got

    async def _deliver(self, got: list[InFlight], stop: anyio.Event) -> None:
        if stop.is_set():
            await self._queue.release(got)  # the worker is stopping: another takes them now
        else:
            self._start(got)
