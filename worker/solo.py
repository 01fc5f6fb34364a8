"""Suspects run alone: a job whose previous try died with its worker takes nothing else down.

When a worker is killed (out of memory, a decoder that crashes the process), every job it held
comes back, and the one that killed it would take its new batch-mates down with it on each try,
until they too ran out of tries. A job claimed after its lease lapsed (its last try ended with
no word) is therefore a suspect: it waits until the other jobs of this worker have finished,
and no new job starts, nor is any new message received, until it is done. If it kills the
worker again, it kills only itself; the innocent batch-mates of the first crash run alone once
each and pass.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio


class SoloGate:
    """Ordinary jobs share the worker; a suspect has it to itself."""

    def __init__(self) -> None:
        self._running = 0
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
    async def alone(self) -> AsyncIterator[None]:
        await self._until(lambda: not self._solo)
        self._solo = True
        self._notify()
        try:
            await self._until(lambda: self._running == 0)
            yield
        finally:
            self._solo = False
            self._notify()
