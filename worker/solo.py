"""Suspects run alone: a job whose previous try died with its worker takes nothing else down.

When a worker is killed (out of memory, a decoder that crashes the process), every job it held
comes back, and the one that killed it would take its new batch-mates down with it on each try,
until they too ran out of tries. A job claimed after its lease lapsed (its last try ended with
no word) is therefore a suspect: it waits until every other message this worker holds is
settled, and no new job starts, nor is any new message received, until it is done. If it kills
the worker again, it kills only itself; the innocent batch-mates of the first crash run alone
once each and pass.

Settled, not only out of the pipeline: a job that has finished its stages still has its message
to delete, a duplicate still announces and deletes, a message received with the suspect is still
being sent on as a copy, and a receive under way brings messages SQS has counted a try for
already (so a suspect may wait for one long poll). A crash before that ends costs each message a
try that nothing counts (its item is READY already, or was never claimed), and since a dead
worker's messages all come back together, the same batch-mates meet the suspect again on each
of its tries: an innocent upload could end READY with its message in the dead-letter queue.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio


class SoloGate:
    """Ordinary jobs share the worker; a suspect has it to itself."""

    def __init__(self) -> None:
        self._running = 0
        # Messages the consumer holds, from their receive until they are settled.
        self._held: Counter[str] = Counter()
        self._receiving = 0
        self._solo = False
        self._changed = anyio.Event()

    @property
    def active(self) -> bool:
        return self._solo

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def _until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self._changed.wait()

    def hold(self, message_id: str) -> None:
        """For the consumer: a message received, not yet deleted, handed back or put off."""
        self._held[message_id] += 1

    def let_go(self, message_id: str) -> None:
        """For the consumer: the message is settled (whatever the outcome of the call)."""
        self._held[message_id] -= 1
        if self._held[message_id] <= 0:
            del self._held[message_id]
        self._notify()

    @contextmanager
    def receiving(self) -> Iterator[None]:
        """For the receive loop: a receive under way; what it brings is held before it ends."""
        self._receiving += 1
        try:
            yield
        finally:
            self._receiving -= 1
            self._notify()

    def _alone_with(self, message_id: str) -> bool:
        others = any(held != message_id for held in self._held)
        return self._running == 0 and self._receiving == 0 and not others

    async def wait_inactive(self, seconds: float) -> None:
        """For the receive loop: wait (at most ``seconds``) until no suspect is running."""
        with anyio.move_on_after(seconds):
            await self._until(lambda: not self._solo)

    @asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        await self._until(lambda: not self._solo)
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1
            self._notify()

    @asynccontextmanager
    async def alone(self, message_id: str) -> AsyncIterator[None]:
        """Run once no other job runs and no other message is held (``message_id`` carries
        the suspect itself)."""
        await self._until(lambda: not self._solo)
        self._solo = True
        self._notify()
        try:
            # None of them waits on the gate, so this ends: a job claimed now goes elsewhere.
            await self._until(lambda: self._alone_with(message_id))
            yield
        finally:
            self._solo = False
            self._notify()
