"""The worker bench's arithmetic and its steady-state window, on tiny made-up figures."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest

from bench.worker import (
    Kind,
    Rounds,
    calls_per_upload,
    pin_process,
    placements,
    process_cpu_seconds,
    summarise,
)
from bench.worker_child import OwnThreads, Watch, Window
from worker.stage_runner import STAGE_THREAD_PREFIX


def test_the_window_opens_after_the_warm_uploads_and_closes_after_the_counted_ones() -> None:
    window = Window(warm=2, count=3)
    for done in range(2):
        window.ended(done)
    assert window.opened is None
    window.ended(2)
    opened = window.opened
    assert opened is not None
    window.ended(4)
    assert window.closed is None
    window.ended(5)
    assert window.closed is not None
    window.ended(7)  # the tail changes nothing
    assert window.opened == opened
    figures = window.figures()
    assert figures["uploads"] == 3
    assert figures["seconds"] >= 0
    assert figures["cpu_seconds"] >= 0


def test_a_round_has_as_many_uploads_before_and_after_its_window_as_run_at_once() -> None:
    a, b, c = Path("a.jpg"), Path("b.jpg"), Path("c.jpg")
    photos = Kind("photo", "photos/s", (a, b, c), "job slot")
    warm, files = photos.round_files(concurrency=4, cpu_threads=2)
    assert warm == 4
    assert files == [a, b, c, a, a, b, c, b, c, a, b]
    clips = Kind("video", "clips/s", (a,), "CPU thread")
    warm, files = clips.round_files(concurrency=8, cpu_threads=2)
    assert (warm, files) == (2, [a] * 5)


def test_an_operation_missing_from_a_round_counts_zero_there() -> None:
    rounds = [
        {"uploads": 10, "calls": {"s3.PutObject": 20, "s3.ListObjectsV2": 10}},
        {"uploads": 10, "calls": {"s3.PutObject": 20}},
        {"uploads": 10, "calls": {"s3.PutObject": 30}},
    ]
    assert calls_per_upload(rounds) == {"s3.ListObjectsV2": 0.0, "s3.PutObject": 2.0}


def test_the_worker_s_own_cpu_is_its_own_threads_and_the_ratio_is_of_rates() -> None:
    rounds = Rounds(
        stage=[
            {"uploads": 10, "seconds": 1.0, "cpu_seconds": 1.0},
            {"uploads": 10, "seconds": 2.0, "cpu_seconds": 1.2},
        ],
        worker=[
            {
                "uploads": 10,
                "seconds": 4.0,
                "cpu_seconds": 1.5,
                "own_cpu_seconds": 0.3,
                "calls": {"s3.GetObject": 10},
                "moto_cpu_seconds": 2.0,
                "total_uploads": 20,
            }
        ],
    )
    rows = {m.name: m for m in summarise(Kind("p", "photos/s", (), "job slot"), rounds, load=3)}
    assert rows["worker p stage CPU/upload"].value == pytest.approx(110)  # median of 100, 120
    # Its own threads' 30 ms; the other 120 ms of the worker's CPU were its stages'.
    assert rows["worker p own CPU/upload"].value == pytest.approx(30)
    assert rows["worker p stage CPU in the worker/upload"].value == pytest.approx(120)
    assert rows["worker p stage CPU in the worker/upload"].ratio == pytest.approx(110 / 120)
    assert rows["worker p own CPU vs stage's"].value == pytest.approx(100 * 30 / 120)
    # By difference across processes, round by round: 150 ms less the stages' 100 ms alone.
    assert rows["worker p worker CPU less the stage alone's/upload"].value == pytest.approx(50)
    assert rows["worker p worker CPU less the stage alone's vs stage's"].value == pytest.approx(
        100 * 50 / 100
    )
    end_to_end = rows["worker p end to end"]
    assert end_to_end.value == pytest.approx(2.5)
    assert end_to_end.reference == "worker p stage alone"
    # Round by round: the worker's round against the stage round before it (10 photos/s).
    assert end_to_end.ratio == pytest.approx(2.5 / 10)
    assert (end_to_end.rounds, end_to_end.ratio_low, end_to_end.ratio_high) == (1, 0.25, 0.25)
    own = rows["worker p own CPU/upload"]
    assert (own.low, own.high, own.rounds) == (30, 30, 1)
    assert rows["worker p AWS calls/upload"].value == 1
    assert rows["worker p moto CPU/upload (not the worker's)"].value == pytest.approx(100)
    assert rows["worker p load average"].value == 3


def test_a_process_cpu_time_is_read_from_proc() -> None:
    before = process_cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert process_cpu_seconds(os.getpid()) - before >= 0.03


def _spin(seconds: float) -> None:
    deadline = time.thread_time() + seconds
    while time.thread_time() < deadline:
        pass


def test_own_threads_count_the_worker_s_threads_and_not_a_stage_s() -> None:
    own = OwnThreads()
    before = own.sample()
    spun, go = threading.Event(), threading.Event()

    def helper() -> None:
        _spin(0.1)
        spun.set()
        go.wait()

    stage = threading.Thread(target=_spin, args=(0.2,), name=f"{STAGE_THREAD_PREFIX}thumbnail m1")
    worker_side = threading.Thread(target=helper, name="AnyIO worker thread")
    stage.start()
    worker_side.start()
    spun.wait()
    own.sample()  # the last reading of the helper's clock before it ends
    go.set()
    worker_side.join()
    stage.join()
    # The helper has ended and the stage's thread is not the worker's: 0.1 s, not 0.3 s.
    used = own.sample() - before
    assert 0.1 <= used < 0.18


class _Counted(OwnThreads):
    def __init__(self) -> None:
        super().__init__()
        self.samples = 0

    def sample(self) -> float:
        self.samples += 1
        return super().sample()


async def test_the_edges_read_the_clocks_in_the_step_a_job_ends_and_only_then() -> None:
    own = _Counted()
    watch = Watch(Window(warm=2, count=3, own=own.sample), own, total=7, every=60)
    async with anyio.create_task_group() as group:
        group.start_soon(watch.run, 0)
        await anyio.sleep(0.01)
        watch.job_done(1)
        assert own.samples == 0
        watch.job_done(2)
        # Read at once, on the job's own step: no poll between the end and the reading.
        assert watch.window.opened is not None
        assert own.samples == 1
        for done in (3, 4):
            watch.job_done(done)
        assert own.samples == 1
        watch.job_done(5)
        assert watch.window.closed is not None
        assert own.samples == 2
        watch.job_done(6)
        watch.job_done(7)  # the last job: run returns
    assert watch.window.figures()["uploads"] == 3


async def test_a_window_with_no_uploads_warm_opens_as_the_watch_starts() -> None:
    own = OwnThreads()
    watch = Watch(Window(warm=0, count=1, own=own.sample), own, total=1, every=60)
    async with anyio.create_task_group() as group:
        group.start_soon(watch.run, 0)
        await anyio.sleep(0.01)
        assert watch.window.opened is not None
        watch.job_done(1)
    assert watch.window.closed is not None


async def test_a_thread_that_ends_mid_window_keeps_what_it_used_before_the_last_sample() -> None:
    own = OwnThreads()
    watch = Watch(Window(warm=1, count=1, own=own.sample), own, total=2, every=0.02)
    async with anyio.create_task_group() as group:
        group.start_soon(watch.run, 0)
        watch.job_done(1)
        spun, go = threading.Event(), threading.Event()

        def helper() -> None:
            _spin(0.1)
            spun.set()
            go.wait()

        worker_side = threading.Thread(target=helper, name="AnyIO worker thread")
        worker_side.start()
        await anyio.to_thread.run_sync(spun.wait)
        await anyio.sleep(0.1)  # a few of the watch's samples
        go.set()
        await anyio.to_thread.run_sync(worker_side.join)
        watch.job_done(2)
    # The helper ended before the window closed; its 0.1 s still counts.
    assert 0.1 <= watch.window.figures()["own_cpu_seconds"] < 0.18


def test_moto_gets_a_core_of_its_own_only_where_there_are_two() -> None:
    assert placements([0, 1]) == [("moto on its own core", {0}), ("moto beside it", None)]
    assert placements([0, 1, 2, 3])[0] == ("moto on its own core", {0, 1, 2})
    assert placements([5]) == [("moto beside it", None)]


def test_pinning_a_process_reaches_every_thread_of_it() -> None:
    sleeper = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import threading, time; "
            "threading.Thread(target=time.sleep, args=(30,)).start(); time.sleep(30)",
        ]
    )
    try:
        deadline = time.monotonic() + 10
        tasks = Path(f"/proc/{sleeper.pid}/task")
        while len(list(tasks.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        core = min(os.sched_getaffinity(0))
        pin_process(sleeper.pid, {core})
        for task in tasks.iterdir():
            assert os.sched_getaffinity(int(task.name)) == {core}
    finally:
        sleeper.kill()
        sleeper.wait()
