"""A receive for a single free slot waits while the CPU threads have work queued (worker.intake).

The queue here is a stand-in of our own MediaQueue (which lanes, how many in flight, what a
receive asked for): what is tested is the intake's choice, not SQS.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from worker.intake import DEFERRED_LOOK_SECONDS, Intake, receive_batch
from worker.queue import MEDIA, InFlight


class Lanes:
    """One media lane; records each receive's count, and brings that many messages."""

    def __init__(self) -> None:
        self.lanes = {MEDIA: object()}
        self.in_flight: set[InFlight] = set()
        self.asked: list[int] = []

    def in_flight_on(self, lane: Any) -> int:
        return 0

    async def receive(self, count: int, stop: anyio.Event, **_: Any) -> list[Any]:
        self.asked.append(count)
        return [object()] * count

    async def release(self, flights: list[Any]) -> None:
        raise AssertionError("nothing is handed back while running")


async def offer(
    free: int,
    waiting_for_cpu: int,
    *,
    batch: int = 2,
    threads: int = 2,
    looks: list[float] | None = None,
) -> Any:
    looks = [] if looks is None else looks
    lanes = Lanes()
    started: list[Any] = []
    intake = Intake(
        lanes,  # type: ignore[arg-type]
        reserved_slots=0,
        start=started.extend,
        wake=lambda: None,
        batch=batch,
        cpu_threads=threads,
        cpu_queue=lambda: waiting_for_cpu,
    )
    async with anyio.create_task_group() as group:
        progressed = await intake.fill(free, anyio.Event(), group)
    looks.append(intake.look_again_in)
    return progressed, intake.deferred, lanes.asked, len(started)


async def test_one_free_slot_waits_while_a_round_of_cpu_work_is_queued() -> None:
    assert await offer(1, waiting_for_cpu=2) == (False, True, [], 0)
    assert await offer(1, waiting_for_cpu=5) == (False, True, [], 0)


async def test_enough_free_slots_are_received_for_at_once() -> None:
    assert await offer(2, waiting_for_cpu=5) == (True, False, [2], 2)
    assert await offer(7, waiting_for_cpu=5) == (True, False, [7], 7)


async def test_a_cpu_thread_about_to_run_out_of_work_gets_the_single_slot_filled() -> None:
    # Fewer jobs queued than threads: one would soon sit idle, so no receive waits.
    assert await offer(1, waiting_for_cpu=1) == (True, False, [1], 1)
    assert await offer(1, waiting_for_cpu=0) == (True, False, [1], 1)


@pytest.mark.parametrize(("concurrency", "batch"), [(1, 1), (2, 1), (4, 1), (8, 2), (16, 4)])
def test_a_batch_is_a_quarter_of_the_job_slots(concurrency: int, batch: int) -> None:
    assert receive_batch(concurrency) == batch


async def test_with_a_batch_of_one_nothing_waits() -> None:
    assert await offer(1, waiting_for_cpu=9, batch=1) == (True, False, [1], 1)


async def test_a_held_back_receive_is_looked_at_again_within_hundredths_of_a_second() -> None:
    # The CPU queue shortens without any slot freeing: the consumer must not sleep its full
    # second on a free slot it held back, nor spin on it.
    looks: list[float] = []
    await offer(1, waiting_for_cpu=2, looks=looks)
    await offer(2, waiting_for_cpu=5, looks=looks)
    assert looks == [DEFERRED_LOOK_SECONDS, 1.0]
    assert 0.01 <= DEFERRED_LOOK_SECONDS <= 0.1
